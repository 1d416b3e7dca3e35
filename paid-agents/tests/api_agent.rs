//! The API-mode agent in a real Docker sandbox, driven by scripted models:
//! it fixes a failing test, refuses path escapes and goes on, edits only on
//! an exact unique match, moves large files through environment variables,
//! and stops on loops, the turn limit and the token budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::symlink;

use common::{CALC, Sandbox, Scripted, TURN_USAGE, call, calls, image, read, say};
use paid_agents::{ApiAgent, ApiConfig};
use paid_core::{Agent, AgentExit, Error, FailureClass, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;

const PROMPT: &str = "Resolve issue #1: add() returns the wrong result. `sh test.sh` fails.";

fn agent(model: std::sync::Arc<Scripted>, config: ApiConfig) -> ApiAgent {
    ApiAgent::new(model, ApiConfig { model: "scripted-1".into(), ..config })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_model_fixes_the_failing_test() {
    let sb = Sandbox::start(&image(), CALC).await;
    let model = Scripted::sequence(vec![
        call("list", json!({})),
        call("read_file", json!({"path": "calc.sh"})),
        call("run", json!({"command": "sh test.sh"})),
        call("edit", json!({"path": "calc.sh", "old_string": "$(( $1 - $2 ))", "new_string": "$(( $1 + $2 ))"})),
        call("run", json!({"command": "sh test.sh"})),
        say("Fixed add() in calc.sh: it subtracted instead of adding. sh test.sh passes."),
    ]);
    let out = agent(model.clone(), ApiConfig::default()).run(sb.context(PROMPT, None)).await.unwrap();

    assert_eq!(out.exit, AgentExit::Completed);
    assert_eq!(out.summary, "Fixed add() in calc.sh: it subtracted instead of adding. sh test.sh passes.");
    let mut total = Usage::default();
    for _ in 0..6 {
        total += TURN_USAGE;
    }
    assert_eq!(out.usage, Some(total));
    assert!(read(&sb.path("calc.sh")).contains("echo $(( $1 + $2 ))"));

    let results = model.tool_results();
    assert_eq!(results.len(), 5, "{results:#?}");
    assert_eq!(results[0], "calc.sh\ntest.sh");
    assert!(results[1].starts_with("#!/bin/sh\nadd() {"), "{}", results[1]);
    assert!(results[2].starts_with("exit code: 1\nFAIL: add 2 3: expected 5, got -1"), "{}", results[2]);
    assert_eq!(results[3], "edited calc.sh");
    assert_eq!(results[4], "exit code: 0\nok: add 2 3\nok: mul 4 5");

    // The model got the tools and a system prompt naming the checks.
    let first = model.requests.lock().unwrap()[0].clone();
    assert_eq!(first.model, "scripted-1");
    let names: Vec<_> = first.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["read_file", "write_file", "edit", "list", "grep", "run"]);
    assert!(first.system.unwrap().contains("`sh test.sh`"));
    // The tools ran through the session: the run log has them.
    let log: String = sb.store.logs(sb.run_id, 0).await.unwrap().iter().map(|c| c.text.clone()).collect();
    assert!(log.contains("ok: add 2 3"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escapes_are_refused_and_the_agent_continues() {
    let sb = Sandbox::start(&image(), CALC).await;
    symlink("/", sb.path("root_link")).unwrap();
    symlink("../../../etc", sb.path("etc_link")).unwrap();
    let model = Scripted::sequence(vec![
        call("read_file", json!({"path": "../../etc/passwd"})),
        call("read_file", json!({"path": "/etc/passwd"})),
        call("read_file", json!({"path": "root_link/etc/passwd"})),
        call("read_file", json!({"path": "etc_link/passwd"})),
        call("write_file", json!({"path": "root_link/tmp/pwned", "content": "x"})),
        call("edit", json!({"path": "root_link/etc/hostname", "old_string": "a", "new_string": "b"})),
        call("list", json!({"path": "root_link"})),
        call("grep", json!({"pattern": "root", "path": "etc_link"})),
        // Absolute paths under the mount are fine.
        call("read_file", json!({"path": "/workspace/calc.sh", "limit": 2})),
        say("could not leave the worktree"),
    ]);
    let out = agent(model.clone(), ApiConfig { idle_turns: 50, ..ApiConfig::default() })
        .run(sb.context(PROMPT, None))
        .await
        .unwrap();
    assert_eq!(out.exit, AgentExit::Completed);
    assert_eq!(out.summary, "could not leave the worktree");

    let results = model.tool_results();
    assert_eq!(results.len(), 9);
    assert_eq!(
        results[0],
        "error: refused: ../../etc/passwd leads out of the worktree through `..`; only paths inside it can be used"
    );
    assert_eq!(
        results[1],
        "error: refused: /etc/passwd is outside the worktree: absolute paths must lie under /workspace; use a path relative to it"
    );
    assert_eq!(
        results[2],
        "error: refused: root_link/etc/passwd resolves to /etc/passwd, which is outside the worktree (/workspace); only paths inside it can be used"
    );
    for (i, r) in results.iter().enumerate().take(8).skip(3) {
        assert!(r.starts_with("error: refused: ") && r.contains("outside the worktree"), "result {i}: {r}");
        assert!(!r.contains("root:x:0:0"), "result {i} leaked: {r}");
    }
    assert_eq!(results[8], "#!/bin/sh\nadd() {\n[lines 1-2 of 8; pass offset/limit to read more]");
    let probe = sb.session.exec(paid_core::ExecRequest::shell("test -e /tmp/pwned")).await.unwrap();
    assert_eq!(probe.exit, paid_core::ExecExit::Code(1), "nothing was written through the link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_need_one_exact_match_and_large_files_cross_by_environment() {
    let sb = Sandbox::start(&image(), &[("twice.txt", "same\nsame\n"), ("crlf.txt", "a\r\nb\r\n")]).await;
    // 1.2 MiB: more than one environment variable (128 KiB) and more than
    // one exec (768 KiB) carry.
    let big: String = (0..50_000).map(|i| format!("line {i:06} ünïcödé\n")).collect();
    assert!(big.len() > 1_100_000);
    let model = Scripted::sequence(vec![
        calls(&[
            ("edit", json!({"path": "twice.txt", "old_string": "same", "new_string": "other"})),
            ("edit", json!({"path": "twice.txt", "old_string": "absent", "new_string": "x"})),
            ("edit", json!({"path": "missing.txt", "old_string": "a", "new_string": "b"})),
            ("edit", json!({"path": "crlf.txt", "old_string": "a\r\n", "new_string": "A\r\n"})),
            ("edit", json!({"path": "twice.txt", "old_string": "same\nsame", "new_string": "same\nsame"})),
            ("edit", json!({"path": "twice.txt"})),
            ("nope", json!({})),
        ]),
        call("write_file", json!({"path": "deep/dir/big.txt", "content": big})),
        call("write_file", json!({"path": "deep/dir/big.txt", "content": big})),
        call("grep", json!({"pattern": "line 04999[0-9]", "glob": "*.txt"})),
        call("grep", json!({"pattern": "zzz"})),
        say("done"),
    ]);
    let out = agent(model.clone(), ApiConfig::default()).run(sb.context(PROMPT, None)).await.unwrap();
    assert_eq!(out.exit, AgentExit::Completed);

    let r = model.tool_results();
    assert_eq!(
        r[0],
        "error: old_string matches 2 places in twice.txt; include more surrounding lines so that it matches exactly one"
    );
    assert!(
        r[1].starts_with("error: old_string was not found in twice.txt; it must match the file exactly"),
        "{}",
        r[1]
    );
    assert_eq!(r[2], "error: missing.txt does not exist");
    assert_eq!(r[3], "edited crlf.txt");
    assert_eq!(r[4], "old_string and new_string are the same; nothing changed");
    assert!(r[5].starts_with("error: invalid arguments for edit: missing field `old_string`"), "{}", r[5]);
    assert!(r[6].starts_with("error: there is no tool \"nope\""), "{}", r[6]);
    assert_eq!(r[7], format!("wrote {} bytes to deep/dir/big.txt", big.len()));
    assert_eq!(r[8], format!("deep/dir/big.txt already has this content ({} bytes); nothing changed", big.len()));
    assert_eq!(
        r[9],
        (49_990..50_000)
            .map(|i| format!("./deep/dir/big.txt:{}:line {i:06} ünïcödé", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(r[10], "no matches for \"zzz\" in .");

    assert_eq!(read(&sb.path("twice.txt")), "same\nsame\n");
    assert_eq!(std::fs::read(sb.path("crlf.txt")).unwrap(), b"A\r\nb\r\n");
    assert_eq!(read(&sb.path("deep/dir/big.txt")), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_model_ends_stuck() {
    let sb = Sandbox::start(&image(), CALC).await;

    // The same call again and again.
    let model = Scripted::new(|_, _| call("read_file", json!({"path": "calc.sh"})));
    let out = agent(model.clone(), ApiConfig::default()).run(sb.context(PROMPT, None)).await.unwrap();
    match &out.exit {
        AgentExit::Stuck { reason } => {
            assert_eq!(
                reason,
                "the same tool call was made 3 times without any file changing in between: read_file {\"path\":\"calc.sh\"}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(model.requests.lock().unwrap().len(), 3);

    // Different calls, but nothing ever changes.
    let model = Scripted::new(|turn, _| call("read_file", json!({"path": "calc.sh", "offset": turn})));
    let config = ApiConfig { idle_turns: 4, ..ApiConfig::default() };
    let out = agent(model.clone(), config).run(sb.context(PROMPT, None)).await.unwrap();
    assert_eq!(out.exit, AgentExit::Stuck { reason: "no file changed in the last 4 turns".into() });

    // A `run` that changes a file counts as progress.
    let model = Scripted::new(|turn, _| match turn {
        1..=3 => call("run", json!({"command": format!("echo {turn} > note.txt")})),
        _ => say("wrote notes"),
    });
    let config = ApiConfig { idle_turns: 2, ..ApiConfig::default() };
    let out = agent(model, config).run(sb.context(PROMPT, None)).await.unwrap();
    assert_eq!(out.exit, AgentExit::Completed);
    assert_eq!(read(&sb.path("note.txt")), "3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_limit_and_token_budget_are_enforced() {
    let sb = Sandbox::start(&image(), CALC).await;
    // Always making progress, never finishing.
    let busy =
        || Scripted::new(|turn, _| call("write_file", json!({"path": "progress.txt", "content": turn.to_string()})));

    let model = busy();
    let out = agent(model.clone(), ApiConfig { max_turns: 5, ..ApiConfig::default() })
        .run(sb.context(PROMPT, None))
        .await
        .unwrap();
    assert_eq!(
        out.exit,
        AgentExit::Failed {
            class: FailureClass::Permanent,
            message: "stopped at the turn limit (5) before the model finished".into()
        }
    );
    assert_eq!(model.requests.lock().unwrap().len(), 5);
    assert_eq!(read(&sb.path("progress.txt")), "5");

    let model = busy();
    let err = agent(model.clone(), ApiConfig { max_tokens: 300, ..ApiConfig::default() })
        .run(sb.context(PROMPT, None))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::BudgetExceeded(m) if m.contains("used 360 tokens")), "{err}");
    assert_eq!(model.requests.lock().unwrap().len(), 3);

    // Without a model selected or configured, the agent says what to set.
    let err = ApiAgent::new(busy(), ApiConfig::default()).run(sb.context(PROMPT, None)).await.unwrap_err();
    assert!(err.to_string().contains("ApiConfig::model is empty"), "{err}");
}
