//! A real agent from `paid init`'s defaults: aider (from PyPI, in
//! `paid/agent-aider:bookworm`, `scripts/build-images --aider`) fixes an
//! issue under `paid serve` with the written paid.toml edited only where a
//! new user must: the repository (here the fake GitHub and a local remote),
//! the trusted author, the project's image, agent, model and verify command,
//! and the provider key (here pointing at a fake OpenAI upstream). `[proxy]`
//! and `[docker]` keep their defaults: egress control on, the proxy on
//! `127.0.0.1:8701`. Only the label prefix changes, so the test's clean-up
//! cannot touch anything else on the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paid_core::Usage;
use paid_examples::demo::{DEMO_REPO, create_sample_remote_in};
use paid_github::fake::FakeGitHub;
use paid_llm::fake::{Canned, FakeUpstream, Reply};

/// One search/replace edit in aider's `diff` format.
const EDIT: &str = "The bug is in `add()`: it subtracts. Fixed:\n\ncalc.sh\n```\n<<<<<<< SEARCH\n    echo $(( $1 - $2 ))\n=======\n    echo $(( $1 + $2 ))\n>>>>>>> REPLACE\n```\n";

fn edit(text: &mut String, from: &str, to: &str) {
    assert!(text.contains(from), "paid init's paid.toml no longer has {from:?}");
    *text = text.replacen(from, to, 1);
}

struct Daemon(Child, String);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        for kind in [&["ps", "-aq"][..], &["network", "ls", "-q"][..], &["volume", "ls", "-q"][..]] {
            let out = Command::new("docker")
                .args(kind)
                .args(["--filter", &format!("label={}.managed=true", self.1)])
                .output()
                .unwrap();
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
            if !ids.is_empty() {
                let rm: &[&str] = match kind[0] {
                    "ps" => &["rm", "-f"],
                    "network" => &["network", "rm"],
                    _ => &["volume", "rm", "-f"],
                };
                let _ = Command::new("docker").args(rm).args(&ids).output();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aider_succeeds_from_paid_init_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let remote = create_sample_remote_in(dir.path()).unwrap();
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue(
        DEMO_REPO.0,
        DEMO_REPO.1,
        1,
        "add() returns the wrong result",
        "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
        "octocat",
        &["paid-build"],
    );
    let upstream = FakeUpstream::start().await.unwrap();
    let usage = Usage { input: 1_830, cache_read: 0, cache_write: 0, output: 64, reasoning: 0 };
    upstream.push(Reply::Ok(Canned::text(EDIT).usage(usage)));
    upstream.set_default(Canned::text("The fix is complete.").usage(usage));

    let paid = env!("CARGO_BIN_EXE_paid");
    let config = dir.path().join("paid.toml");
    let out = Command::new(paid).arg("--config").arg(&config).arg("init").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let prefix = format!("pinit{}", std::process::id());
    let mut text = std::fs::read_to_string(&config).unwrap();
    edit(&mut text, "api_url = \"https://api.github.com\"", &format!("api_url = \"{}\"", github.base_url()));
    edit(&mut text, "label_prefix = \"paid\"", &format!("label_prefix = \"{prefix}\""));
    edit(&mut text, "repo = \"your-org/your-repo\"", &format!("repo = \"{}/{}\"", DEMO_REPO.0, DEMO_REPO.1));
    edit(
        &mut text,
        "# clone_url = \"https://github.com/your-org/your-repo.git\"",
        &format!("clone_url = \"{}\"", remote.display()),
    );
    edit(&mut text, "allowed_authors = [\"your-login\"]", "allowed_authors = [\"octocat\"]");
    edit(&mut text, "verify = [\"cargo test\"]", "verify = [\"sh test.sh\"]");
    edit(
        &mut text,
        "image = \"paid/agent:bookworm\"\nagent = \"claude-code\"",
        "image = \"paid/agent-aider:bookworm\"\nagent = \"aider\"",
    );
    edit(&mut text, "# model = \"claude-sonnet-4-5\"", "model = \"openai/gpt-4o\"");
    edit(
        &mut text,
        "# [providers.openai]\n# key_file = \"/run/secrets/openai-key\"",
        &format!("[providers.openai]\nkey_env = \"OPENAI_API_KEY\"\nbase_url = \"{}\"", upstream.url()),
    );
    assert!(text.contains("bind = \"127.0.0.1:8701\""), "the proxy keeps its default bind");
    assert!(!text.contains("sandbox_url ="), "no sandbox_url is set");
    std::fs::write(&config, &text).unwrap();

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(paid)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .current_dir(dir.path())
        .env("GITHUB_TOKEN", "gh-test-token")
        .env("OPENAI_API_KEY", "sk-real-provider-key")
        .env("PAID_POLL_INTERVAL_MS", "300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _daemon = Daemon(child, prefix);
    let read_log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(240);
    while github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty() {
        assert!(Instant::now() < deadline, "no pull request after 240 s; log:\n{}", read_log());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let prs = github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1);
    let fixed =
        Command::new("git").args(["show", &format!("{}:calc.sh", prs[0].head)]).current_dir(&remote).output().unwrap();
    assert!(String::from_utf8_lossy(&fixed.stdout).contains("echo $(( $1 + $2 ))"), "{}", read_log());
    // Every model request came through the proxy, with the real key only
    // upstream.
    let received = upstream.received();
    assert!(!received.is_empty(), "{}", read_log());
    for r in &received {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-real-provider-key"));
    }
}
