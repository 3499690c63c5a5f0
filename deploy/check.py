#!/usr/bin/env python3
"""Checks the deployment examples as far as a machine without systemd running
or a Kubernetes cluster allows:

- the systemd unit parses, and `systemd-analyze verify` accepts it (when
  installed; with the built binary in place of /usr/local/bin/beethoven);
- the Kubernetes manifests parse as YAML (PyYAML), hold a headless Service and
  a StatefulSet that names it, and the StatefulSet's seed is that Service's
  DNS name;
- every `--flag` and `BEETHOVEN_*` variable both files use is one the built
  binary knows (from its `--help`).

Usage: deploy/check.py path/to/beethoven
"""

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.join(HERE, "systemd", "beethoven.service")
MANIFEST = os.path.join(HERE, "kubernetes", "beethoven.yaml")


def fail(message):
    print(f"deploy/check.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def known_words(binary):
    """The flags and variables `beethoven agent`, and the client, document."""
    text = ""
    for command in (["agent", "--help"], ["members", "--help"]):
        text += subprocess.run(
            [binary, *command], check=True, capture_output=True, text=True
        ).stdout
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    variables = set(re.findall(r"env: (BEETHOVEN_[A-Z_]+)=", text))
    return flags, variables


def check_unit(binary, flags):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    with open(UNIT, encoding="utf-8") as unit:
        # systemd continues a line with a trailing backslash.
        parser.read_string(unit.read().replace("\\\n", " "))
    for section in ("Unit", "Service", "Install"):
        if section not in parser:
            fail(f"{UNIT}: no [{section}] section")
    start = parser["Service"].get("ExecStart", "")
    if not start.startswith("/usr/local/bin/beethoven agent"):
        fail(f"{UNIT}: ExecStart does not run `beethoven agent`: {start}")
    for flag in re.findall(r"(--[a-z][a-z0-9-]*)", start):
        if flag not in flags:
            fail(f"{UNIT}: ExecStart uses {flag}, which `beethoven agent` does not know")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("deploy/check.py: systemd-analyze not installed: the unit was parsed only")
        return
    with tempfile.TemporaryDirectory() as folder:
        with open(UNIT, encoding="utf-8") as unit:
            text = unit.read().replace("/usr/local/bin/beethoven", os.path.abspath(binary))
        copy = os.path.join(folder, "beethoven.service")
        with open(copy, "w", encoding="utf-8") as out:
            out.write(text)
        result = subprocess.run(
            [analyze, "verify", "--man=no", copy], capture_output=True, text=True
        )
        # Lines about the host (no such user, no dbus) say nothing of the unit.
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if "beethoven.service" in line and "user" not in line.lower()
        ]
        if problems:
            fail(f"systemd-analyze verify {UNIT}:\n" + "\n".join(problems))
    print(f"deploy/check.py: {UNIT} verified by systemd-analyze")


def check_manifest(variables):
    try:
        import yaml  # noqa: PLC0415 (only this check needs it)
    except ImportError:
        fail("PyYAML is missing (apt-get install python3-yaml)")
    with open(MANIFEST, encoding="utf-8") as manifest:
        documents = [doc for doc in yaml.safe_load_all(manifest) if doc]
    kinds = {doc.get("kind"): doc for doc in documents}
    service, stateful = kinds.get("Service"), kinds.get("StatefulSet")
    if service is None or stateful is None:
        fail(f"{MANIFEST}: expected a Service and a StatefulSet, found {list(kinds)}")
    if service["spec"].get("clusterIP") != "None":
        fail(f"{MANIFEST}: the Service is not headless (clusterIP: None)")
    name = service["metadata"]["name"]
    if stateful["spec"].get("serviceName") != name:
        fail(f"{MANIFEST}: the StatefulSet's serviceName is not the Service `{name}`")
    container = stateful["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    for variable in env:
        if variable.startswith("BEETHOVEN_") and variable not in variables:
            fail(f"{MANIFEST}: {variable} is not a variable the agent knows")
    seeds = env.get("BEETHOVEN_SEEDS", "")
    if not seeds.startswith(f"{name}."):
        fail(f"{MANIFEST}: the seed `{seeds}` is not the headless Service's DNS name")
    print(f"deploy/check.py: {MANIFEST} parsed: headless Service `{name}`, seed {seeds}")


def main():
    if len(sys.argv) != 2:
        fail("usage: deploy/check.py path/to/beethoven")
    binary = sys.argv[1]
    flags, variables = known_words(binary)
    check_unit(binary, flags)
    check_manifest(variables)


if __name__ == "__main__":
    main()
