//! `paid run` and `paid runs …`: trigger, list, show, logs, cancel,
//! candidates, pick.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use paid_api::{ApiClient, ClientError, CompareRequest, Envelope, RunDetail, RunsQuery, TriggerRun};
use paid_core::RunState;
use paid_core::engine::CandidateReport;

use super::Out;

/// `paid runs …`.
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// List runs, newest first.
    List {
        /// Only this project (owner/repo).
        #[arg(long)]
        project: Option<String>,
        /// Only runs not yet ended.
        #[arg(long)]
        active: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A run: state, steps, cost, model decision.
    Show {
        /// Run id.
        id: String,
    },
    /// A run's log.
    Logs {
        /// Run id.
        id: String,
        /// Keep printing until the run ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a run: the agent is stopped and cleanup still runs.
    Cancel {
        /// Run id.
        id: String,
        /// Wait until the run has ended.
        #[arg(long)]
        wait: bool,
    },
    /// A comparison run's candidates side by side.
    Candidates {
        /// Run id.
        id: String,
    },
    /// Pick the winner of a comparison run awaiting a choice.
    Pick {
        /// Run id.
        id: String,
        /// The candidate's name (c2-model) or model.
        candidate: String,
    },
}

fn spinner(out: Out, msg: String) -> ProgressBar {
    let pb =
        if out.json || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Polls a run until it ends (or, with `until_choice`, waits for a human
/// pick), showing its state.
async fn wait_for(
    client: &ApiClient,
    id: &str,
    until_choice: bool,
    out: Out,
) -> Result<Envelope<RunDetail>, ClientError> {
    let pb = spinner(out, format!("run {id}: waiting"));
    loop {
        let v = client.run(id).await?;
        let state = v.data.run.state;
        pb.set_message(format!("run {id}: {state}"));
        if state.is_terminal() || (until_choice && state == RunState::AwaitingChoice) {
            pb.finish_and_clear();
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `paid run ISSUE`: queue a run (a comparison with `compare`), and with
/// `wait` follow it to its end.
pub async fn trigger(
    client: &ApiClient,
    issue: &str,
    wait: bool,
    compare: Option<CompareRequest>,
    out: Out,
) -> Result<ExitCode, ClientError> {
    let mut req = TriggerRun::issue_url(issue);
    req.compare = compare;
    let v = client.trigger(&req).await?;
    if !wait {
        return Ok(out.success(&v, |d| println!("queued run {} for {}#{}", d.run.id, d.repo, d.run.issue_number)));
    }
    let id = v.data.run.id.to_string();
    let done = wait_for(client, &id, true, out).await?;
    Ok(out.success(&done, |d| {
        print_run(d);
        if d.run.state == RunState::AwaitingChoice {
            println!("pick the winner: paid runs pick {id} <candidate>");
        }
    }))
}

/// Runs `paid runs …`.
pub async fn runs(client: &ApiClient, cmd: RunsCmd, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        RunsCmd::List { project, active, limit } => {
            let mut q = RunsQuery::new().active(active).limit(limit);
            q.project = project;
            Ok(out.success(&client.runs(&q).await?, |runs| {
                println!("{:<36}  {:<28} {:>6}  {:<16} PR", "RUN", "REPO", "ISSUE", "STATE");
                for r in runs {
                    println!(
                        "{:<36}  {:<28} {:>6}  {:<16} {}",
                        r.run.id.to_string(),
                        r.repo,
                        r.run.issue_number,
                        r.run.state.to_string(),
                        r.run.pr_url.as_deref().unwrap_or("-")
                    );
                }
            }))
        }
        RunsCmd::Show { id } => Ok(out.success(&client.run(&id).await?, print_run)),
        RunsCmd::Logs { id, follow } => logs(client, &id, follow, out).await,
        RunsCmd::Cancel { id, wait } => {
            let v = client.cancel(&id).await?;
            if !wait {
                return Ok(out.success(&v, |d| println!("cancel requested for run {} (now {})", d.run.id, d.run.state)));
            }
            let done = wait_for(client, &id, false, out).await?;
            Ok(out.success(&done, print_run))
        }
        RunsCmd::Candidates { id } => Ok(out.success(&client.candidates(&id).await?, |d| {
            println!("run {} is {}", d.run_id, d.state);
            print_candidates(&d.candidates);
            if d.awaiting_choice {
                println!("pick one: paid runs pick {} <candidate>", d.run_id);
            }
        })),
        RunsCmd::Pick { id, candidate } => Ok(out.success(&client.pick(&id, &candidate).await?, |d| {
            println!("picked {candidate} for run {}; it goes on to commit, push and open the PR", d.run.id)
        })),
    }
}

/// The side-by-side table of a comparison run's candidates.
fn print_candidates(list: &[CandidateReport]) {
    if list.is_empty() {
        println!("no candidates yet (they are listed once every candidate is done)");
        return;
    }
    println!(
        "{:<28} {:<24} {:<8} {:>5} {:>10} {:>6} {:>5} {:>9}  ERROR",
        "CANDIDATE", "MODEL", "VERIFY", "ITER", "COST", "LINES", "FILES", "DURATION"
    );
    for c in list {
        let cost = c.cost_micros.map_or_else(|| "-".to_string(), |m| format!("${:.4}", m as f64 / 1e6));
        let lines = c.lines_changed.map_or_else(|| "-".to_string(), |l| l.to_string());
        let verify = if c.verify_passed { "passed" } else { "failed" };
        println!(
            "{:<28} {:<24} {:<8} {:>5} {:>10} {:>6} {:>5} {:>8.1}s  {}",
            c.name,
            c.candidate.model,
            verify,
            c.iterations,
            cost,
            lines,
            c.files_changed,
            c.duration_ms as f64 / 1000.0,
            c.error.as_deref().unwrap_or("")
        );
    }
}

async fn logs(client: &ApiClient, id: &str, follow: bool, out: Out) -> Result<ExitCode, ClientError> {
    let mut after = 0u64;
    loop {
        let v = client.logs(id, after).await?;
        for c in &v.data.chunks {
            after = after.max(c.seq);
            if out.json {
                println!("{}", serde_json::to_string(c).unwrap_or_default());
            } else {
                print!("{}", c.text);
            }
        }
        if !follow || (v.data.finished && v.data.chunks.is_empty()) {
            return Ok(ExitCode::SUCCESS);
        }
        if v.data.chunks.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn print_run(d: &RunDetail) {
    let run = &d.run;
    println!("run      {}", run.id);
    println!("issue    {}#{} {}", d.repo, run.issue_number, d.issue.as_ref().map_or("-", |i| i.title.as_str()));
    println!("state    {}", run.state);
    if let Some(f) = &run.failure {
        println!("failure  {} at {}: {}", f.code, f.step, f.message);
    }
    println!("branch   {}", run.branch.as_deref().unwrap_or("-"));
    println!("pr       {}", run.pr_url.as_deref().unwrap_or("-"));
    match &d.model_decision {
        Some(m) => println!("model    {} ({})", m.model, m.selector),
        None => println!("model    - (-)"),
    }
    println!(
        "cost     ${:.4} from {} usage records{}",
        d.cost.usd,
        d.cost.records,
        if d.cost.unpriced_records > 0 { " (some unpriced)" } else { "" }
    );
    if let Some(candidates) = &d.candidates {
        println!("candidates");
        print_candidates(candidates);
    }
    println!("steps");
    for st in &d.steps {
        let status =
            serde_json::to_value(st.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        println!("  {:>3} {:<16} {:<8} {}", st.seq, st.step.to_string(), status, st.error.as_deref().unwrap_or(""));
    }
}
