//! One run of a handler's program: the event in its environment and on its
//! stdin, a process group of its own (killed whole at the timeout), stdout
//! and stderr read to their end and kept up to [`OUTPUT_CAP`] bytes each.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::Invocation;

/// Bytes of a run's stdout (and of its stderr) kept; the rest is discarded.
pub(crate) const OUTPUT_CAP: usize = 64 * 1024;

/// What a run printed, each stream cut at [`OUTPUT_CAP`] bytes.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub(super) stdout: Captured,
    pub(super) stderr: Captured,
}

/// The first [`OUTPUT_CAP`] bytes of a stream, and whether there were more.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub(super) bytes: Vec<u8>,
    pub(super) cut: bool,
}

/// As text for the logs (invalid UTF-8 replaced), ` [cut]` when cut.
impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.bytes))?;
        if self.cut {
            f.write_str(" [cut]")?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug)]
pub(super) enum Ran {
    /// The program exited (or was killed by a signal other than the timeout's).
    Exited(ExitStatus, Output),
    /// The timeout came first: the process group was killed.
    TimedOut(Output),
}

/// Runs `program` once for `invocation`, at most `timeout`.
pub(super) async fn run(
    program: &Path,
    invocation: &Invocation,
    timeout: Duration,
) -> std::io::Result<Ran> {
    let mut child = tokio::process::Command::new(program)
        .envs(invocation.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id();
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let input = invocation.stdin.clone();
    let feed = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A handler that does not read its stdin is not an error.
            let _ = stdin.write_all(&input).await;
        }
        drop(stdin);
    };
    let outcome = tokio::time::timeout(timeout, async {
        let ((), stdout, stderr, status) =
            tokio::join!(feed, capped(stdout), capped(stderr), child.wait());
        status.map(|status| (status, Output { stdout, stderr }))
    })
    .await;
    match outcome {
        Ok(result) => result.map(|(status, output)| Ran::Exited(status, output)),
        Err(_elapsed) => {
            if let Some(group) = group.and_then(|pid| i32::try_from(pid).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            Ok(Ran::TimedOut(Output::default()))
        }
    }
}

/// Reads `stream` to its end, keeping the first [`OUTPUT_CAP`] bytes.
async fn capped(stream: Option<impl AsyncRead + Unpin>) -> Captured {
    let Some(mut stream) = stream else {
        return Captured::default();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut cut = false;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP - kept.len();
                kept.extend_from_slice(&buffer[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    Captured { bytes: kept, cut }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::handlers::tests::user_event;
    use crate::handlers::{event_variable, user_variables};

    /// An executable script in a directory of this test's own.
    fn script(test: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("beethoven-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("handler.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn join_of(stdin: &str) -> Invocation {
        Invocation {
            event: "member-join".to_owned(),
            env: vec![event_variable("member-join")],
            stdin: stdin.as_bytes().to_vec(),
            answer: None,
        }
    }

    #[tokio::test]
    async fn a_user_event_handler_gets_the_name_and_lamport_time_in_its_environment_and_the_payload_on_stdin()
     {
        let program = script(
            "user",
            "echo \"$BEETHOVEN_EVENT|$BEETHOVEN_USER_EVENT|$BEETHOVEN_USER_LTIME|$BEETHOVEN_USER_ORIGIN|$BEETHOVEN_USER_SEQ|$(od -An -tx1 | tr -d ' \\n')\"",
        );
        let event = user_event("deploy", &[0, 0xff, b'a']);
        let invocation = Invocation {
            event: "user:deploy".to_owned(),
            env: user_variables(&event),
            stdin: event.payload.clone(),
            answer: None,
        };
        match run(&program, &invocation, Duration::from_secs(60)).await {
            Ok(Ran::Exited(status, output)) => {
                assert!(status.success());
                assert_eq!(output.stdout.to_string(), "user|deploy|9|origin|4|00ff61\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_handler_gets_the_event_in_its_environment_and_the_member_on_stdin() {
        let program = script("env", "read line; echo \"$BEETHOVEN_EVENT|$line\"");
        let ran = run(
            &program,
            &join_of("n2\t127.0.0.1:1\n"),
            Duration::from_secs(60),
        )
        .await;
        match ran {
            Ok(Ran::Exited(status, output)) => {
                assert!(status.success());
                assert_eq!(output.stdout.to_string(), "member-join|n2\t127.0.0.1:1\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_flooding_handler_is_read_to_its_end_and_its_output_cut() {
        let program = script(
            "flood",
            "head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2",
        );
        let ran = run(&program, &join_of(""), Duration::from_secs(60)).await;
        match ran {
            Ok(Ran::Exited(status, output)) => {
                assert!(status.success());
                assert_eq!(output.stdout.bytes.len(), OUTPUT_CAP);
                assert!(output.stdout.cut);
                assert_eq!(output.stderr.to_string(), "done\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_handler_that_floods_without_end_is_killed_at_its_timeout() {
        let program = script("flood-forever", "yes flood");
        let ran = run(&program, &join_of(""), Duration::from_millis(300)).await;
        assert!(matches!(ran, Ok(Ran::TimedOut(_))), "{ran:?}");
    }

    #[tokio::test]
    async fn a_hanging_handler_is_killed_at_its_timeout_with_what_it_started() {
        let program = script("hang", "sleep 300 & wait");
        let ran = run(&program, &join_of(""), Duration::from_millis(300)).await;
        assert!(matches!(ran, Ok(Ran::TimedOut(_))), "{ran:?}");
    }
}
