//! `beethoven-sim --report` pages in a real browser: headless Chromium loads
//! each page from disk (no network) and dumps its DOM, and the charts hold the
//! series the scenario put there: one crash strip per crash on the timeline, a
//! detection per crash in the CDF, and the partition's window where the
//! scenario cut the network (at 1 s), drawn at that time.
//!
//! The browser is `$STATUS_PAGE_BROWSER`, or the first of
//! `chromium-headless-shell`, `chromium`, `chromium-browser` on `PATH`; without
//! one the test says so and skips, unless `STATUS_PAGE_BROWSER` is set (`.ci/run`
//! sets it once it has installed Chromium), when a missing browser is a failure.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "../../tests/support/browser.rs"]
mod find_browser;
use find_browser::{BROWSERS, browser};

/// A browser process in a group of its own, killed whole when dropped (the
/// browser forks helpers).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DOM of `page` after the browser loaded it.
fn dump_dom(browser: &Path, page: &Path, profile: &Path) -> String {
    let mut child = Group(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display()))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", browser.display())),
    );
    let mut stdout = child.0.stdout.take().expect("piped");
    let (done, dom) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = done.send(text);
    });
    dom.recv_timeout(Duration::from_secs(60))
        .expect("the browser dumps the page's DOM")
}

/// Runs `beethoven-sim` with `args` and `--report`, and loads the page.
fn report(browser: &Path, name: &str, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "beethoven-report-browser-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let page = dir.join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_beethoven-sim"))
        .args(args)
        .arg("--report")
        .arg(&page)
        .output()
        .expect("beethoven-sim runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = dump_dom(browser, &page, &dir.join("profile"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(dom.contains("</html>"), "the page loaded: {dom:.300}");
    dom
}

/// The opening tag of the element with `id`, and everything up to its end.
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<{tag} id=\"{id}\""))
        .unwrap_or_else(|| panic!("the page has a {tag} #{id}"));
    let end = dom[start..]
        .find(&format!("</{tag}>"))
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The value of `name` in the first tag of `html`.
fn attribute<'a>(html: &'a str, name: &str) -> &'a str {
    let head = &html[..html.find('>').unwrap_or(html.len())];
    let at = head
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("{name} in {head}"))
        + name.len()
        + 3;
    &head[at..at + head[at..].find('"').unwrap_or(0)]
}

fn number(html: &str, name: &str) -> f64 {
    let text = attribute(html, name);
    text.parse()
        .unwrap_or_else(|_| panic!("{name}={text:?} is a number"))
}

/// The `x` of every `<rect>` filled with `colour` in `svg`.
fn rects(svg: &str, colour: &str) -> Vec<f64> {
    svg.split("<rect")
        .skip(1)
        .filter(|rect| rect.contains(&format!("fill=\"{colour}\"")))
        .map(|rect| number(rect, "x"))
        .collect()
}

#[test]
fn the_report_pages_draw_the_crashes_and_the_partition_where_the_scenario_put_them() {
    let Some(browser) = browser() else {
        #[allow(clippy::print_stderr)] // the skip must be visible in the test log
        {
            eprintln!(
                "SKIP the_report_pages_draw_the_crashes_and_the_partition_where_the_scenario_put_them: \
                 no Chromium on PATH ({}); install one (apt-get install chromium-headless-shell) \
                 or set STATUS_PAGE_BROWSER",
                BROWSERS.join(", ")
            );
        }
        return;
    };

    // A crash at 1, 11, 21 and 31 s of the window.
    let crash = report(
        &browser,
        "crash",
        &["--nodes", "20", "--scenario", "crash", "--duration", "35"],
    );
    let timeline = element(&crash, "figure", "timeline");
    assert_eq!(attribute(timeline, "data-crashes"), "4");
    let crash_strips = rects(timeline, "#222222");
    assert_eq!(crash_strips.len(), 4, "one crash strip per crash");
    let (left, right, span) = (
        number(timeline, "data-plot-left"),
        number(timeline, "data-plot-right"),
        number(timeline, "data-span-s"),
    );
    let x = |secs: f64| left + (right - left) * secs / span;
    for at in [1.0, 11.0, 21.0, 31.0] {
        assert!(
            crash_strips
                .iter()
                .any(|&strip| (strip - x(at)).abs() <= 2.0),
            "a crash strip at {at} s (x {}): {crash_strips:?}",
            x(at)
        );
    }
    let detection = element(&crash, "figure", "detection");
    assert_eq!(attribute(detection, "data-detections"), "4");
    assert!(detection.contains("<svg"), "the CDF is drawn");
    assert!(number(detection, "data-p50-s") > 0.0);
    for id in ["traffic-msgs", "traffic-bytes"] {
        let traffic = element(&crash, "figure", id);
        assert!(number(traffic, "data-seconds") >= 30.0, "{id}");
        assert!(traffic.contains("<polyline"), "{id} has its series");
    }
    assert!(crash.contains("beethoven-sim --nodes 20 --scenario crash --duration 35 --seed 1"));

    // A third cut off at 1 s, healed at 10 s (halfway).
    let partition = report(
        &browser,
        "partition",
        &[
            "--nodes",
            "12",
            "--scenario",
            "partition",
            "--duration",
            "20",
        ],
    );
    let faults = element(&partition, "table", "faults");
    assert!(
        faults.contains(
            "data-kind=\"partition\" data-from-s=\"1.000\" data-until-s=\"10.000\" data-nodes=\"4\""
        ),
        "{faults}"
    );
    let timeline = element(&partition, "figure", "timeline");
    assert_eq!(attribute(timeline, "data-crashes"), "0");
    let (left, right, span) = (
        number(timeline, "data-plot-left"),
        number(timeline, "data-plot-right"),
        number(timeline, "data-span-s"),
    );
    let strips = rects(timeline, "#12A4A4");
    assert_eq!(
        strips.len(),
        5,
        "the network's strip and the 4 cut-off nodes'"
    );
    let at = left + (right - left) * 1.0 / span;
    assert!(
        strips.iter().all(|&strip| (strip - at).abs() <= 2.0),
        "the partition is drawn from 1 s (x {at}): {strips:?}"
    );
    let offline_some = rects(timeline, "#E8743B");
    assert!(
        !offline_some.is_empty(),
        "each side held the other offline during the partition"
    );
}
