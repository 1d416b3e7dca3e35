//! `paid demo`, the README's first command, run as the README writes it:
//! `scripts/build-images`, then the `paid` binary with `demo` and no other
//! argument, from a fresh working directory. The test holds what the README
//! promises: each step of the run is printed, and the output ends with the
//! pull request opened on the fake forge, the branch pushed to the bare
//! remote (carrying the fix) and the SQLite file holding the run's journal and
//! logs. Docker and `paid/agent:bookworm` are required: the test fails (never
//! skips) without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use paid_core::store::RunFilter;
use paid_core::store::prelude::*;
use paid_core::{RunState, StepStatus};
use paid_store_sqlite::SqliteStore;

/// The README's newcomer command, verbatim.
const README_COMMAND: &str = "scripts/build-images && cargo run -p paid-examples --bin paid -- demo";

/// How long each half of the command may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(180);

/// Runs `cmd` to completion, or kills it after `DEADLINE` and fails with the
/// output it printed so far.
fn run(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {DEADLINE:?}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn git(remote: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(remote).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_demo_command_opens_a_pull_request() {
    // The command this test runs is the one the README gives.
    let readme = include_str!("../../README.md");
    assert!(
        readme.lines().any(|l| l.trim() == README_COMMAND),
        "README.md no longer gives `{README_COMMAND}`: update this test to run the README's command"
    );
    let ci = std::env::var("CI").ok();
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match info {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "Docker is required by `paid demo` and does not answer (CI={ci:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("Docker is required by `paid demo`; the docker CLI cannot run (CI={ci:?}): {e}"),
    }

    // `scripts/build-images` (from the workspace root, as the README runs it).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut build = Command::new(root.join("scripts/build-images"));
    build.current_dir(root);
    let built = run(build, "scripts/build-images");
    assert!(built.status.success(), "scripts/build-images failed (CI={ci:?})\n{}", text(&built));

    // `cargo run -p paid-examples --bin paid -- demo`: the same binary, the
    // same single argument, in a fresh directory standing for the user's.
    let cwd = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_paid"));
    demo.arg("demo").current_dir(cwd.path()).env_remove("RUST_LOG");
    let started = Instant::now();
    let out = run(demo, "paid demo");
    let took = started.elapsed();
    let all = text(&out);
    assert!(out.status.success(), "paid demo failed\n{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);

    // Each step of the run is printed, in order, ending in success.
    let steps: Vec<&str> = stdout.lines().filter_map(|l| l.trim().strip_prefix("→ ")).collect();
    let expected = ["running_agent", "verifying", "committing", "pushing", "opening_pr", "succeeded"];
    let mut at = 0;
    for want in expected {
        at += steps[at..]
            .iter()
            .position(|s| *s == want)
            .unwrap_or_else(|| panic!("the printed steps {steps:?} lack {want:?} after {:?}\n{all}", &steps[..at]));
        at += 1;
    }
    assert_eq!(steps.last(), Some(&"succeeded"), "{all}");

    // It ends with the pull request on the fake forge...
    let pr = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Done. Pull request: "))
        .unwrap_or_else(|| panic!("no `Done. Pull request:` line\n{all}"))
        .trim();
    assert!(
        pr.starts_with("http://127.0.0.1:") && pr.contains("/paid-demo/calc/pull/"),
        "the pull request {pr:?} is not on the fake forge\n{all}"
    );

    // ...the branch pushed to the bare remote, under ./paid-demo...
    let dir = cwd.path().join("paid-demo");
    let (branch, remote) = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("branch ")?.split_once(" pushed to "))
        .unwrap_or_else(|| panic!("no `branch ... pushed to ...` line\n{all}"));
    let remote = Path::new(remote);
    assert_eq!(std::fs::canonicalize(remote).unwrap(), std::fs::canonicalize(dir.join("remote.git")).unwrap());
    let calc = git(remote, &["show", &format!("{branch}:calc.sh")]);
    assert!(calc.contains("$(( $1 + $2 ))"), "the pushed branch does not carry the fix:\n{calc}");
    let ahead = git(remote, &["rev-list", "--count", &format!("main..{branch}")]);
    assert_eq!(ahead.trim(), "1", "the branch should be one commit on main");

    // ...and the SQLite file holding the run's journal and logs.
    let db = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("run journal and logs: sqlite3 ")?.split_once(' '))
        .map(|(db, _)| db.to_string())
        .unwrap_or_else(|| panic!("no `run journal and logs` line\n{all}"));
    assert_eq!(std::fs::canonicalize(&db).unwrap(), std::fs::canonicalize(dir.join("paid.db")).unwrap());
    let store = SqliteStore::open(&db).unwrap();
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.pr_url.as_deref(), Some(pr));
    assert_eq!(run.branch.as_deref(), Some(branch));
    let journal = store.steps(run.id).await.unwrap();
    for step in [RunState::RunningAgent, RunState::Verifying, RunState::Pushing, RunState::OpeningPr] {
        assert!(
            journal.iter().any(|s| s.step == step && s.status == StepStatus::Done),
            "the journal has no done {step} step: {journal:?}"
        );
    }
    let logs: String = store.logs(run.id, 0).await.unwrap().into_iter().map(|c| c.text).collect();
    assert!(logs.contains("Fixed add() in calc.sh"), "the agent's output is not in the run's logs:\n{logs}");
    eprintln!("paid demo took {took:?}");
}
