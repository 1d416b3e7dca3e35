//! End to end: a comparison run of three scripted "models" in real Docker
//! sandboxes on real git worktrees. The model whose verify passes at the
//! smallest cost becomes the one PR; no other candidate's branch reaches
//! the remote. Docker is required: this test fails (never skips) without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use paid_agents::CommandAgent;
use paid_core::engine::{CompareSpec, EngineConfig};
use paid_core::{Agent, AgentContext, AgentOutcome, RunState, StepStatus, SystemClock};
use paid_examples::demo::{DEMO_REPO, DemoConfig, DemoSetup, FIXER_SCRIPT};

/// One script, three behaviors by `PAID_MODEL`: `wrong` breaks `add()` in
/// another way (verify fails), `verbose` fixes it and also edits the README,
/// `tidy` just fixes it.
fn script() -> String {
    format!(
        "case \"$PAID_MODEL\" in \
           wrong) sed -i 's/\\$1 - \\$2/$1 * $2/' calc.sh && echo 'Made add() multiply.' ;; \
           verbose) {FIXER_SCRIPT} && printf '\\nadd() adds.\\n' >> README.md ;; \
           *) {FIXER_SCRIPT} ;; \
         esac"
    )
}

/// The command agent, with a price list per model (a scripted agent
/// reports no cost of its own).
struct Priced {
    inner: CommandAgent,
    prices: HashMap<&'static str, i64>,
}

#[async_trait]
impl Agent for Priced {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        let model = ctx.model.unwrap_or_default().to_string();
        let mut outcome = self.inner.run(ctx).await?;
        outcome.cost_micros = self.prices.get(model.as_str()).copied();
        Ok(outcome)
    }
}

fn remote_branches(remote: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["for-each-ref", "--format=%(refname:short)", "refs/heads"])
        .current_dir(remote)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

fn remote_file(remote: &Path, branch: &str, file: &str) -> String {
    let out = Command::new("git").args(["show", &format!("{branch}:{file}")]).current_dir(remote).output().unwrap();
    assert!(out.status.success(), "git show {branch}:{file}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_models_in_real_sandboxes_one_pr_from_the_cheapest_passing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = DemoConfig {
        agent_script: script(),
        engine: EngineConfig { worker_id: "compare-worker".into(), max_iterations: 2, ..EngineConfig::default() },
        ..DemoConfig::default()
    };
    let kind = config.agent_kind.clone();
    let s = match DemoSetup::create(tmp.path(), config).await {
        Ok(s) => s,
        Err(e) => panic!("demo setup failed (is Docker running? CI={:?}): {e:#}", std::env::var("CI").ok()),
    };
    let before = remote_branches(&s.remote);
    let agent = Priced {
        inner: CommandAgent::new(kind, script()).unwrap(),
        prices: HashMap::from([("wrong", 1_000), ("verbose", 20_000), ("tidy", 50_000)]),
    };
    let engine =
        s.builder_with(s.engine_config(), Arc::new(SystemClock)).unwrap().agent(Arc::new(agent)).build().unwrap();

    let run = engine.enqueue_compare(s.project.id, s.issue, CompareSpec::models(["wrong", "verbose", "tidy"])).await;
    let run = run.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done.len(), 1);
    let ended = &done[0];
    assert_eq!(ended.state, RunState::Succeeded, "{:?}", ended.failure);

    // The cheapest candidate whose verify passed won.
    let reports = engine.candidates(run.id).await.unwrap();
    let table: Vec<_> =
        reports.iter().map(|r| (r.name.as_str(), r.verify_passed, r.iterations, r.cost_micros)).collect();
    assert_eq!(
        table,
        vec![
            ("c1-wrong", false, 2, Some(2_000)),
            ("c2-verbose", true, 1, Some(20_000)),
            ("c3-tidy", true, 1, Some(50_000)),
        ],
        "{reports:#?}"
    );
    assert_eq!((reports[1].files_changed, reports[2].files_changed), (2, 1));
    // One line changed in calc.sh (+1 -1); `verbose` also added two to the README.
    assert_eq!((reports[1].lines_changed, reports[2].lines_changed), (Some(4), Some(2)), "{reports:#?}");
    assert_eq!(ended.model.as_deref(), Some("verbose"));
    let branch = ended.branch.clone().unwrap();
    assert!(branch.ends_with("-c2"), "{branch}");

    // Exactly one new branch on the remote: the winner's, with its work.
    let after = remote_branches(&s.remote);
    let new: Vec<&String> = after.iter().filter(|b| !before.contains(b)).collect();
    assert_eq!(new, vec![&branch], "remote branches: {after:?}");
    assert!(remote_file(&s.remote, &branch, "calc.sh").contains("$(( $1 + $2 ))"));
    assert!(remote_file(&s.remote, &branch, "README.md").contains("add() adds."));

    // One PR, from the winner's branch, with the side-by-side table.
    let prs = s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert_eq!(prs[0].head, branch);
    assert!(prs[0].body.contains("| **winner** | c2-verbose | `verbose` | passed |"), "{}", prs[0].body);
    assert!(prs[0].body.contains("| c1-wrong | `wrong` | failed | 2 |"), "{}", prs[0].body);
    let comments = s.github.comments(DEMO_REPO.0, DEMO_REPO.1, s.issue);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("c3-tidy"), "{}", comments[0].body);

    // No sandbox or worktree is left, and the journal is complete.
    let sandboxes = s.runtime.list_managed().await.unwrap();
    assert!(!sandboxes.iter().any(|b| b.run_id.as_deref() == Some(run.id.to_string().as_str())), "{sandboxes:?}");
    let worktrees = s.dir.join("workspaces").join("worktrees");
    let left: Vec<_> =
        std::fs::read_dir(&worktrees).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "worktrees left behind: {left:?}");
    let steps = s.store.steps(run.id).await.unwrap();
    assert!(steps.iter().all(|st| st.status != StepStatus::Started), "{steps:#?}");
}
