//! The status page in a real browser: headless Chromium loads it from an agent
//! of a 3-agent cluster, one agent is killed, and its row and the members
//! chart change on the page by themselves (the page reads `/v1/events`, it
//! does not poll). The tag
//! filter narrows the table and the chart; a dropped stream is reconnected.
//!
//! The browser is driven over the Chrome DevTools Protocol (a WebSocket). It is
//! `$STATUS_PAGE_BROWSER`, or the first of `chromium-headless-shell`,
//! `chromium`, `chromium-browser` found on `PATH`. Without one the test skips,
//! and says so on the terminal's stderr (past libtest's capture, which would
//! hide the message of a passing test); when `STATUS_PAGE_BROWSER` is set
//! (`.ci/run` sets it once it has installed Chromium) or
//! `BEETHOVEN_REQUIRE_ALL_TESTS` is set (CI that must run every test), a
//! missing browser is a failure.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Agent, DEADLINE, Scratch, eventually, request};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

#[path = "../../tests/support/browser.rs"]
mod find_browser;
use find_browser::{BROWSERS, browser};

/// A headless browser showing one page, killed when dropped.
struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    _profile: Scratch,
}

impl Browser {
    fn open(binary: &PathBuf, url: &str) -> Browser {
        let profile = Scratch::new("browser-profile");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(url)
            // A group of its own, killed whole on drop: distributions start the
            // browser through a shell script that does not `exec` it, and the
            // browser forks helpers of its own.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let (found, port) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://").nth(1)
                    && let Some(addr) = rest.split('/').next()
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = found.send(addr);
                }
            }
        });
        let devtools = port
            .recv_timeout(DEADLINE)
            .expect("the browser announces its DevTools port");
        let mut page_url = None;
        eventually("the browser lists its page", || {
            // The answer's WebSocket addresses are built from the Host header.
            let (_, body) = request(
                devtools,
                &format!(
                    "GET /json/list HTTP/1.1\r\nHost: {devtools}\r\nConnection: close\r\n\r\n"
                ),
            );
            let targets: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
            page_url = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
            page_url.is_some()
        });
        let (page, _) = tungstenite::connect(page_url.expect("found")).expect("DevTools connects");
        Browser {
            child,
            page,
            next_id: 1,
            _profile: profile,
        }
    }

    /// Evaluates `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.page
            .send(Message::text(call.to_string()))
            .expect("the call is sent");
        loop {
            let message = self.page.read().expect("DevTools answers");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).unwrap_or_default();
            if answer["id"] == id {
                return answer["result"]["result"]["value"].clone();
            }
        }
    }

    /// `[name, status]` of every row of the page's table.
    fn rows(&mut self) -> Vec<(String, String)> {
        let value = self.eval(
            "[...document.querySelectorAll('tr[data-name]')].map(r => [r.dataset.name, r.dataset.status])",
        );
        serde_json::from_value(value).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group (see `open`); killing only the child would orphan the browser.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn row(rows: &[(String, String)], name: &str) -> Option<String> {
    rows.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
}

/// `(online, suspected)` as the page's members chart last drew them.
fn chart(browser: &mut Browser) -> (u64, u64) {
    let value = browser.eval(
        "(() => { const c = document.getElementById('chart'); return [Number(c.dataset.online), Number(c.dataset.suspect)]; })()",
    );
    serde_json::from_value(value).unwrap_or_default()
}

/// Sets the page's tag filter as a user typing it would.
fn filter(browser: &mut Browser, text: &str) {
    let text = serde_json::to_string(text).expect("a string");
    browser.eval(&format!(
        "(() => {{ const i = document.getElementById('tag-filter'); i.value = {text}; \
         i.dispatchEvent(new Event('input')); }})()"
    ));
}

/// Follows `agent`'s event stream on a thread; sends the moment `node` is
/// written offline there.
fn when_offline(agent: SocketAddr, node: &'static str) -> mpsc::Receiver<Instant> {
    let (sender, receiver) = mpsc::channel();
    let mut stream = TcpStream::connect(agent).expect("the HTTP port answers");
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("the request is sent");
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            // Chunked framing lines are not JSON and are skipped.
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["event"] == "tracker"
                && event["new_row"]["node"] == node
                && event["new_row"]["status"] == "offline"
            {
                let _ = sender.send(Instant::now());
                return;
            }
        }
    });
    receiver
}

#[test]
fn the_status_page_shows_a_killed_agent_turn_offline() {
    let Some(binary) = browser() else {
        let message = format!(
            "SKIP the_status_page_shows_a_killed_agent_turn_offline: no Chromium on PATH \
             ({}); install one (apt-get install chromium-headless-shell) or set STATUS_PAGE_BROWSER",
            BROWSERS.join(", ")
        );
        assert!(
            std::env::var_os("BEETHOVEN_REQUIRE_ALL_TESTS").is_none(),
            "BEETHOVEN_REQUIRE_ALL_TESTS is set, so a skip is a failure: {message}"
        );
        // Straight to the process's stderr: libtest captures `eprintln!` and
        // shows it only for a failing test, and a skip must be seen.
        let _ = writeln!(std::io::stderr().lock(), "{message}");
        return;
    };
    let first = Agent::start("n0", &[]);
    let seed = first.udp.to_string();
    let second = Agent::start("n1", &["--seed", &seed, "--tag", "role=db"]);
    let mut third = Agent::start("n2", &["--seed", &seed]);
    let agents = [&first, &second, &third];
    eventually("every agent sees three online", || {
        agents.iter().all(|agent| agent.sees_online(3))
    });

    let mut browser = Browser::open(&binary, &format!("http://{}/", first.http));
    eventually("the page shows the three agents online", || {
        let rows = browser.rows();
        rows.len() == 3 && rows.iter().all(|(_, status)| status == "online")
    });
    eventually("the chart counts three online", || {
        chart(&mut browser) == (3, 0)
    });
    let title = browser.eval("document.title");
    assert_eq!(title, "Beethoven cluster");
    let tags = browser.eval("document.querySelector('tr[data-name=\"n1\"] td.tags').textContent");
    assert_eq!(tags, "role=db", "n1's tags column");

    // The tag filter narrows the table and the chart, and lets go again.
    filter(&mut browser, "role=db");
    let rows = browser.rows();
    assert_eq!(rows, [("n1".to_string(), "online".to_string())]);
    assert_eq!(chart(&mut browser), (1, 0));
    filter(&mut browser, "");
    assert_eq!(browser.rows().len(), 3);

    // A dropped stream comes back, and the table with it (it starts the stream).
    browser.eval("statusPage.dropStream()");
    eventually("the page reconnects to the stream", || {
        browser.eval("statusPage.reconnects").as_u64() >= Some(1)
            && browser.eval("document.getElementById('stream').textContent") == "live"
            && browser.rows().len() == 3
    });

    // A crash, not a leave: the failure detector has to find it.
    let offline = when_offline(first.http, "n2");
    third.signal("KILL");
    let _ = third.wait();
    let declared = offline
        .recv_timeout(DEADLINE)
        .expect("the stream reports n2 offline");
    // The page reads the same stream and polls nothing. It shows the change
    // within milliseconds here; the bound leaves room for a loaded machine
    // (wall-clock bounds in tests must not flake), and still fails a page that
    // waits for anything but the stream.
    let bound = Duration::from_secs(3);
    loop {
        let shown =
            row(&browser.rows(), "n2").as_deref() == Some("offline") && chart(&mut browser).0 == 2;
        if shown {
            break;
        }
        assert!(
            declared.elapsed() < bound,
            "the page did not show n2 offline (row and chart) within {bound:?} of the event"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = browser.rows();
    assert_eq!(row(&rows, "n0").as_deref(), Some("online"));
    assert_eq!(row(&rows, "n1").as_deref(), Some("online"));
    let changes = browser.eval(
        "Number(document.querySelector('tr[data-name=\"n2\"] td.recent svg').dataset.changes)",
    );
    assert!(
        changes.as_u64() >= Some(2),
        "n2's recent changes show online, then offline: {changes}"
    );
    // The same page all along: no navigation happened.
    let loads = browser.eval("performance.getEntriesByType('navigation').length");
    assert_eq!(loads, 1);
}
