//! The HTTP API over TLS: an agent given a certificate and key serves HTTPS
//! only, the client trusts the CA it is given and nothing else, and bad TLS
//! files stop the agent at start, named.

mod support;

use std::path::PathBuf;

use support::{Agent, Scratch, beethoven, eventually, path_str, run, run_with, stderr, stdout};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files.
fn self_signed(dir: &Scratch) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("rcgen makes a certificate");
    let cert = dir.file("cert.pem", &certified.cert.pem());
    let key = dir.file("key.pem", &certified.signing_key.serialize_pem());
    (cert, key)
}

#[test]
fn an_agent_with_a_certificate_serves_https_to_a_client_that_trusts_its_ca() {
    let dir = Scratch::new("tls-serve");
    let (cert, key) = self_signed(&dir);
    let tls = [
        "--http-tls-cert",
        path_str(&cert),
        "--http-tls-key",
        path_str(&key),
    ];
    let agent = Agent::start("secure", &tls);
    let http = agent.http.to_string();

    let members = run(&["members", "--http", &http, "--http-ca", path_str(&cert)]);
    assert_eq!(members.status.code(), Some(0), "{}", stderr(&members));
    assert!(stdout(&members).contains("secure"), "{}", stdout(&members));
    // The same from the environment, with the scheme in the address.
    let from_env = run_with(
        beethoven()
            .args(["members"])
            .env("BEETHOVEN_HTTP_ADDR", format!("https://{http}"))
            .env("BEETHOVEN_HTTP_CA", &cert),
    );
    assert_eq!(from_env.status.code(), Some(0), "{}", stderr(&from_env));

    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    let untrusted = run(&["members", "--http", &format!("https://{http}")]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        stderr(&untrusted).contains("cannot reach the agent"),
        "{}",
        stderr(&untrusted)
    );
    let plain = run(&["members", "--http", &http, "--timeout", "2s"]);
    assert_eq!(plain.status.code(), Some(1), "{}", stdout(&plain));
}

#[test]
fn keys_over_https_reach_every_member_through_the_local_agent() {
    let dir = Scratch::new("tls-keys");
    let (cert, key) = self_signed(&dir);
    let files: Vec<_> = (0..2)
        .map(|i| dir.file(&format!("n{i}.keys"), &format!("{KEY_A}\n")))
        .collect();
    let tls = |file: &PathBuf| {
        vec![
            "--http-tls-cert".to_owned(),
            path_str(&cert).to_owned(),
            "--http-tls-key".to_owned(),
            path_str(&key).to_owned(),
            "--key-file".to_owned(),
            path_str(file).to_owned(),
        ]
    };
    let first_args = tls(&files[0]);
    let first = Agent::start(
        "t0",
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut second_args = tls(&files[1]);
    second_args.extend(["--seed".to_owned(), first.udp.to_string()]);
    let second = Agent::start(
        "t1",
        &second_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let http = first.http.to_string();
    let ca = path_str(&cert);
    eventually("both see each other's keys", || {
        let listed = run(&["members", "--http", &http, "--http-ca", ca, "--json"]);
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&stdout(&listed)).unwrap_or_default();
        rows.len() == 2
            && rows.iter().all(|row| {
                row["tags"]["beethoven.keys"].is_string() && row["tags"]["beethoven.http"].is_null()
            })
    });
    let installed = run(&["keys", "install", KEY_B, "--http", &http, "--http-ca", ca]);
    assert_eq!(installed.status.code(), Some(0), "{}", stderr(&installed));
    let text = stdout(&installed);
    assert!(
        text.contains("t0: done") && text.contains("t1: done"),
        "{text}"
    );
    drop(second);
}

#[test]
fn unusable_tls_files_stop_the_agent_at_start_naming_them() {
    let dir = Scratch::new("tls-bad");
    let (cert, _key) = self_signed(&dir);
    let missing = dir.0.join("missing.pem");
    let not_pem = dir.file("garbage.pem", "not a key\n");
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "--http-tls-cert",
                path_str(&cert),
                "--http-tls-key",
                path_str(&missing),
            ],
            "cannot read the TLS key file",
        ),
        (
            &[
                "--http-tls-cert",
                path_str(&cert),
                "--http-tls-key",
                path_str(&not_pem),
            ],
            "garbage.pem",
        ),
        (
            &["--http-tls-cert", path_str(&cert)],
            "needs both --http-tls-cert and --http-tls-key",
        ),
    ];
    for (extra, message) in cases {
        let mut args = vec![
            "agent",
            "--name",
            "bad-tls",
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(4),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
}
