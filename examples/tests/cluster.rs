#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A cluster of `paid-worker` processes on one real PostgreSQL: exactly-once
//! runs at load, takeover after `kill -9`, and a database restart mid-load.
//!
//! The workers run the instant backends, which record every side effect
//! (push, PR, comment) as an audit event in the same database; the tests read
//! that trail back to prove each idempotency key was used once. Every test
//! is bounded in time and count, and kills its workers when it ends.

use paid_core::store::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::layers::RetryStore;
use paid_core::testing::instant::{self, Effect, EffectKind, KeyCount};
use paid_core::{
    IssueState, NewRun, Project, ProjectId, Run, RunFilter, RunId, RunKind, RunState, StepStatus, Store, TrackedIssue,
};
use paid_store_postgres::{PgStore, testing};
use pretty_assertions::assert_eq;

/// Cluster tests share one server (and one of them restarts it): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One `paid-worker` process.
struct Worker {
    id: String,
    child: Child,
    log: PathBuf,
    ready_file: PathBuf,
}

impl Worker {
    fn start(cluster: &Cluster, id: &str, extra: &[&str]) -> Self {
        let log = cluster.dir.path().join(format!("{id}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let ready_file = cluster.dir.path().join(format!("{id}.ready.json"));
        let _ = std::fs::remove_file(&ready_file);
        let child = Command::new(env!("CARGO_BIN_EXE_paid-worker"))
            .args(["--backends", "instant", "--database-url", &testing::database_url(), "--schema", &cluster.schema])
            .args(["--worker-id", id])
            .args(["--instant-dir", cluster.dir.path().join("worktrees").to_str().unwrap()])
            .args(["--poll-ms", "300", "--pool-size", "4", "--log-format", "json"])
            .arg("--ready-file")
            .arg(&ready_file)
            .args(extra)
            .env_remove("PAID_INSTANT_SLOW")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start paid-worker");
        Self { id: id.into(), child, log, ready_file }
    }

    /// Waits (at most 20 s) for the ready file; fails with the log's tail
    /// if the worker exits or the deadline passes first.
    fn ready(&mut self) -> paid_server::ready::Ready {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Written by a rename: present means complete.
            if let Ok(ready) = paid_server::ready::Ready::read(&self.ready_file) {
                assert_eq!(ready.pid, self.pid(), "{ready:?}");
                return ready;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("worker {} exited with {status} before it was ready\n{}", self.id, self.tail());
            }
            assert!(Instant::now() < deadline, "worker {} wrote no ready file in 20 s\n{}", self.id, self.tail());
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port `--health-addr 127.0.0.1:0` was bound to.
    fn health_port(&mut self) -> u16 {
        let ready = self.ready();
        let port = ready.health.unwrap_or_else(|| panic!("worker {} serves no health: {ready:?}", self.id)).port();
        assert_ne!(port, 0, "{ready:?}");
        port
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {}", self.pid());
    }

    /// Waits for the process to exit, for at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "worker {} did not exit within {limit:?}\n{}", self.id, self.tail());
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then expect a clean exit.
    fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait(Duration::from_secs(20));
        assert!(status.success(), "worker {} exited with {status} after SIGTERM\n{}", self.id, self.tail());
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh schema with instant projects, seen through an admin store.
struct Cluster {
    schema: String,
    pg: PgStore,
    /// `pg` through the retry layer the workers use: reads ride out the
    /// database restart.
    store: RetryStore,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new() -> Self {
        let pg = testing::fresh_store().await;
        let store = RetryStore::new(Arc::new(pg.clone()), Duration::from_secs(60));
        Self { schema: pg.schema().to_string(), pg, store, dir: tempfile::tempdir().unwrap() }
    }

    /// `projects` projects with `per_project` queued runs each (issues
    /// numbered from 1 in each project). Returns the projects.
    async fn queue(&self, projects: usize, per_project: u64, max_concurrent_runs: u32) -> Vec<Project> {
        let now = chrono::Utc::now();
        let mut made = Vec::new();
        for p in 0..projects {
            let project = instant::project(fixture_project_id(), &format!("repo{p}"), max_concurrent_runs, now);
            self.store.put_project(&project).await.unwrap();
            for n in 1..=per_project {
                self.add_run(&project, n, now).await;
            }
            made.push(project);
        }
        made
    }

    async fn add_run(&self, project: &Project, number: u64, now: paid_core::Timestamp) -> Run {
        self.store
            .put_issue(&TrackedIssue {
                project_id: project.id,
                number,
                title: format!("Make thing {number} faster"),
                body: "Please.".into(),
                author: "octocat".into(),
                author_id: Some(paid_core::testing::fixtures::OCTOCAT_ID),
                labels: vec!["paid-build".into()],
                state: IssueState::Open,
                url: format!("https://instant.invalid/{}/issues/{number}", project.repo),
                trusted: true,
                updated_at: now,
            })
            .await
            .unwrap();
        self.store
            .create_run(&NewRun {
                id: RunId(uuid::Uuid::now_v7()),
                project_id: project.id,
                issue_number: number,
                kind: RunKind::Build,
                priority: 0,
                created_at: now,
                context: Default::default(),
            })
            .await
            .unwrap()
    }

    async fn runs(&self) -> Vec<Run> {
        self.store.runs(&RunFilter::default()).await.unwrap()
    }

    /// Waits until every run has ended, for at most `limit`.
    async fn wait_all_ended(&self, limit: Duration, workers: &[&Worker]) -> Vec<Run> {
        let started = Instant::now();
        loop {
            let runs = self.runs().await;
            if runs.iter().all(|r| r.state.is_terminal()) {
                return runs;
            }
            if started.elapsed() > limit {
                let open = runs.iter().filter(|r| !r.state.is_terminal()).count();
                let logs: Vec<String> = workers.iter().map(|w| format!("--- {}\n{}", w.id, w.tail())).collect();
                panic!("{open} of {} runs still open after {limit:?}\n{}", runs.len(), logs.join("\n"));
            }
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn effects(&self, projects: &[Project]) -> Vec<Effect> {
        let mut all = Vec::new();
        for p in projects {
            all.extend(instant::effects(&self.store, p.id).await.unwrap());
        }
        all
    }

    async fn finish(self) {
        self.pg.drop_schema().await.unwrap();
    }
}

fn fixture_project_id() -> ProjectId {
    ProjectId(uuid::Uuid::now_v7())
}

/// The side-effect keys every succeeded run must have used: its branch (push
/// and PR head) and its comment marker.
fn expected_keys(runs: &[Run]) -> BTreeSet<(EffectKind, String)> {
    let mut keys = BTreeSet::new();
    for run in runs {
        let branch = run.branch.clone().expect("a succeeded run has a branch");
        keys.insert((EffectKind::Push, branch.clone()));
        keys.insert((EffectKind::PullRequest, branch));
        keys.insert((EffectKind::Comment, paid_core::engine::comment_marker(run.id)));
    }
    keys
}

fn side_effects(counts: &BTreeMap<(EffectKind, String), KeyCount>) -> BTreeMap<(EffectKind, String), KeyCount> {
    counts.iter().filter(|((k, _), _)| *k != EffectKind::Agent).map(|(k, c)| (k.clone(), *c)).collect()
}

/// Checks that each run's journal has every step done exactly once, in
/// pipeline order, with nothing left started: no step ran twice.
async fn assert_each_step_once(store: &dyn Store, run: &Run) {
    let steps = store.steps(run.id).await.unwrap();
    let done: Vec<RunState> = steps.iter().filter(|s| s.status == StepStatus::Done).map(|s| s.step).collect();
    let want = [
        RunState::SelectingModel,
        RunState::Provisioning,
        RunState::RunningAgent,
        RunState::Committing,
        RunState::PolicyCheck,
        RunState::Pushing,
        RunState::OpeningPr,
        RunState::Reporting,
        RunState::Cleaning,
    ];
    assert_eq!(done, want, "run {} journal: {steps:?}", run.id);
    assert!(steps.iter().all(|s| s.status == StepStatus::Done), "run {}: {steps:?}", run.id);
}

/// 500 runs, 4 worker processes: every run succeeds exactly once, and every
/// side-effect key (branch push, PR head, comment marker) is used once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_runs_on_four_workers_succeed_exactly_once() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new().await;
    let projects = cluster.queue(10, 50, 2).await;
    let started = Instant::now();
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| {
            let extra: Vec<&str> = if i == 0 {
                vec!["--lease-ms", "10000", "--health-addr", ANY_PORT]
            } else {
                vec!["--lease-ms", "10000"]
            };
            Worker::start(&cluster, &format!("load-{i}"), &extra)
        })
        .collect();
    let health_port = workers[0].health_port();
    // Without --health-addr a worker serves nothing, and says so.
    assert_eq!(workers[1].ready().health, None);

    let (status, body) = http_get(health_port, "/health/ready", Duration::from_secs(20), true).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(health_port, "/health", Duration::from_secs(5), true).await;
    assert_eq!(status, 200);

    let runs = cluster.wait_all_ended(Duration::from_secs(240), &workers.iter().collect::<Vec<_>>()).await;
    let elapsed = started.elapsed();
    assert_eq!(runs.len(), 500);
    let failed: Vec<_> = runs.iter().filter(|r| r.state != RunState::Succeeded).collect();
    assert!(failed.is_empty(), "runs that did not succeed: {failed:#?}");
    for run in &runs {
        assert_each_step_once(&cluster.store, run).await;
        assert!(run.pr_url.is_some(), "run {} has a PR", run.id);
    }

    let effects = cluster.effects(&projects).await;
    let counts = instant::count(&effects);
    let side = side_effects(&counts);
    assert_eq!(side.keys().cloned().collect::<BTreeSet<_>>(), expected_keys(&runs), "the keys used are the runs' keys");
    let not_once: Vec<_> = side.iter().filter(|(_, c)| **c != KeyCount { invoked: 1, created: 1 }).collect();
    assert!(not_once.is_empty(), "keys not used exactly once: {not_once:?}");

    let by_worker: BTreeMap<u32, usize> =
        effects.iter().filter(|e| e.kind == EffectKind::Comment).fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.pid).or_default() += 1;
            m
        });
    eprintln!("500 runs on 4 workers in {elapsed:?}; runs finished per worker pid: {by_worker:?}");
    assert!(by_worker.len() >= 2, "the work was shared: {by_worker:?}");

    for w in workers {
        w.stop();
    }
    cluster.finish().await;
}

/// `kill -9` a worker while it holds a run in `running_agent`: its lease
/// expires, another worker resumes the run from its last journaled step,
/// and the run ends with one branch push, one PR and one comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_running_agent_is_taken_over_from_the_journal() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new().await;
    let projects = cluster.queue(1, 0, 2).await;
    let run = cluster.add_run(&projects[0], 7, chrono::Utc::now()).await;
    let lease = ["--lease-ms", "2000"];

    // The victim dawdles in the agent on issue 7.
    let mut victim = Worker::start(&cluster, "victim", &[&lease[..], &["--instant-slow-issue", "7=120000"]].concat());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = cluster.store.run(run.id).await.unwrap();
        if r.state == RunState::RunningAgent && r.lease_owner.as_deref() == Some("victim") {
            break;
        }
        assert!(Instant::now() < deadline, "the victim never reached running_agent: {r:?}\n{}", victim.tail());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Kill it only once its agent has started (journaled `started`).
    loop {
        let agent_started = cluster.effects(&projects).await.iter().any(|e| e.kind == EffectKind::Agent);
        if agent_started {
            break;
        }
        assert!(Instant::now() < deadline, "the victim's agent never started\n{}", victim.tail());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The rescuer is up (ready) before the victim dies, so the takeover
    // time below is the lease's, not the rescuer's startup.
    let mut rescuer = Worker::start(&cluster, "rescuer", &[&lease[..], &["--health-addr", ANY_PORT]].concat());
    let port = rescuer.health_port();
    let (status, body) = http_get(port, "/health/ready", Duration::from_secs(20), true).await;
    assert_eq!(status, 200, "{body}\n{}", rescuer.tail());
    let held = cluster.store.run(run.id).await.unwrap();
    assert_eq!(held.lease_owner.as_deref(), Some("victim"), "taken while the victim lived: {held:?}");
    let victim_pid = victim.pid();
    victim.signal("-KILL");
    let killed_at = Instant::now();
    let status = victim.wait(Duration::from_secs(10));
    assert!(!status.success(), "killed, not exited: {status}");

    let runs = cluster.wait_all_ended(Duration::from_secs(60), &[&rescuer]).await;
    let taken_over_after = killed_at.elapsed();
    let run = runs.into_iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}\n{}", rescuer.tail());
    assert!(
        taken_over_after >= Duration::from_millis(1500),
        "resumed only after the lease expired: {taken_over_after:?}"
    );

    // The journal: the victim's agent step was begun and never finished;
    // the rescuer ran it again and went on. Nothing before it was redone.
    let steps = cluster.store.steps(run.id).await.unwrap();
    let summary: Vec<(RunState, StepStatus)> = steps.iter().map(|s| (s.step, s.status)).collect();
    assert_eq!(
        summary,
        vec![
            (RunState::SelectingModel, StepStatus::Done),
            (RunState::Provisioning, StepStatus::Done),
            (RunState::RunningAgent, StepStatus::Started),
            (RunState::RunningAgent, StepStatus::Done),
            (RunState::Committing, StepStatus::Done),
            (RunState::PolicyCheck, StepStatus::Done),
            (RunState::Pushing, StepStatus::Done),
            (RunState::OpeningPr, StepStatus::Done),
            (RunState::Reporting, StepStatus::Done),
            (RunState::Cleaning, StepStatus::Done),
        ]
    );

    let effects = cluster.effects(&projects).await;
    let agents: Vec<u32> = effects.iter().filter(|e| e.kind == EffectKind::Agent).map(|e| e.pid).collect();
    assert_eq!(agents, vec![victim_pid, rescuer.pid()], "the agent ran on the victim, then on the rescuer");
    let counts = side_effects(&instant::count(&effects));
    let want: BTreeMap<_, _> = expected_keys(std::slice::from_ref(&run))
        .into_iter()
        .map(|k| (k, KeyCount { invoked: 1, created: 1 }))
        .collect();
    assert_eq!(counts, want, "one branch push, one PR, one comment");
    assert!(effects.iter().filter(|e| e.kind != EffectKind::Agent).all(|e| e.pid == rescuer.pid()));

    rescuer.stop();
    cluster.finish().await;
}

/// A PostgreSQL crash mid-load (`pg_ctl -m immediate`: no shutdown
/// checkpoint, no WAL flush, crash recovery at start) loses no run: workers
/// reconnect and finish everything, and every side effect is still created
/// once, though the relaxed commits of the last moments (journal `started`
/// records, log lines) are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_mid_load_loses_no_run() {
    let _serial = SERIAL.lock().await;
    let script = testing::provision_script();
    let provisioned = Command::new(&script).arg("url").output().unwrap();
    let provisioned = String::from_utf8(provisioned.stdout).unwrap().trim().to_string();
    assert_eq!(
        testing::database_url(),
        provisioned,
        "this test restarts the server started by {}; point PAID_TEST_DATABASE_URL at it",
        script.display()
    );
    let cluster = Cluster::new().await;
    let projects = cluster.queue(4, 50, 3).await;
    let workers: Vec<Worker> =
        (0..4).map(|i| Worker::start(&cluster, &format!("restart-{i}"), &["--lease-ms", "10000"])).collect();

    // Let the load get going, then restart the server under it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ended = cluster.runs().await.iter().filter(|r| r.state.is_terminal()).count();
        if ended >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "the load never got going");
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crash_postgres(&script);
    let after_restart = cluster.runs().await.iter().filter(|r| r.state.is_terminal()).count();
    assert!(after_restart < 200, "the restart happened mid-load ({after_restart} of 200 ended)");

    let runs = cluster.wait_all_ended(Duration::from_secs(180), &workers.iter().collect::<Vec<_>>()).await;
    let failed: Vec<_> = runs.iter().filter(|r| r.state != RunState::Succeeded).collect();
    assert!(failed.is_empty(), "runs lost to the restart: {failed:#?}");
    assert_eq!(runs.len(), 200);

    let counts = side_effects(&instant::count(&cluster.effects(&projects).await));
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected_keys(&runs));
    let not_once: Vec<_> = counts.iter().filter(|(_, c)| c.created != 1).collect();
    assert!(not_once.is_empty(), "keys not created exactly once: {not_once:?}");
    let retried = counts.values().filter(|c| c.invoked > 1).count();
    let reconnects: usize = workers
        .iter()
        .map(|w| std::fs::read_to_string(&w.log).unwrap_or_default().matches("store call failed; retrying").count())
        .sum();
    eprintln!(
        "crash: {after_restart} of 200 runs had ended; the workers retried {reconnects} store calls; \
         {retried} side effects were invoked again (idempotently)"
    );
    assert!(reconnects > 0, "the crash reached the workers");

    for w in workers {
        w.stop();
    }
    cluster.finish().await;
}

/// SIGTERM during a run: the worker stops claiming, lets the current step
/// finish, releases the lease and exits 0; readiness reports it draining.
/// With a step longer than `--shutdown-grace-ms`, it gives the step up and
/// releases the lease all the same, so another worker resumes at once
/// rather than after the (long) lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_releases_the_current_step() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new().await;
    let projects = cluster.queue(1, 0, 4).await;
    let now = chrono::Utc::now();
    let slow = cluster.add_run(&projects[0], 7, now).await;

    // 1. The step (a 2 s agent) fits in the grace period: it finishes.
    let mut worker = Worker::start(
        &cluster,
        "drainer",
        &["--lease-ms", "60000", "--health-addr", ANY_PORT, "--instant-slow-issue", "7=2000"],
    );
    let port = worker.health_port();
    wait_agent_started(&cluster, &projects, 1, &worker).await;
    let waiting = cluster.add_run(&projects[0], 8, now).await;
    worker.signal("-TERM");
    // The signal is handled asynchronously: give the worker a moment to flip
    // readiness before asserting on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let (status, body) = loop {
        let (status, body) = http_get(port, "/health/ready", Duration::from_secs(1), false).await;
        if status == 503 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "draining: {body}");
    assert!(body.contains("draining"), "{body}");
    let exit = worker.wait(Duration::from_secs(20));
    assert!(exit.success(), "{exit}\n{}", worker.tail());
    let after = cluster.store.run(slow.id).await.unwrap();
    assert_eq!(after.lease_owner, None, "the lease was released: {after:?}");
    assert!(!after.state.is_terminal(), "stopped between steps, not driven to the end: {after:?}");
    assert_ne!(after.state, RunState::RunningAgent, "the agent step finished: {after:?}");
    let steps = cluster.store.steps(slow.id).await.unwrap();
    assert!(steps.iter().all(|s| s.status == StepStatus::Done), "no step left half done: {steps:?}");
    let untouched = cluster.store.run(waiting.id).await.unwrap();
    assert_eq!((untouched.state, untouched.lease_owner), (RunState::Queued, None), "no claim after SIGTERM");

    // 2. The step outlasts the grace period: it is given up, the lease released.
    let slower = cluster.add_run(&projects[0], 9, now).await;
    let mut worker = Worker::start(
        &cluster,
        "impatient",
        &["--lease-ms", "60000", "--shutdown-grace-ms", "500", "--instant-slow-issue", "9=120000"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = cluster.store.run(slower.id).await.unwrap();
        if r.state == RunState::RunningAgent && r.lease_owner.as_deref() == Some("impatient") {
            break;
        }
        assert!(Instant::now() < deadline, "never reached the slow agent: {r:?}\n{}", worker.tail());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_agent_started(&cluster, &projects, 2, &worker).await;
    let stopped = Instant::now();
    worker.signal("-TERM");
    let exit = worker.wait(Duration::from_secs(15));
    assert!(exit.success(), "{exit}\n{}", worker.tail());
    assert!(stopped.elapsed() < Duration::from_secs(10), "gave up after the grace period: {:?}", stopped.elapsed());
    let after = cluster.store.run(slower.id).await.unwrap();
    assert_eq!((after.state, after.lease_owner.clone()), (RunState::RunningAgent, None), "{after:?}");

    // Another worker picks everything up at once (no lease to wait out).
    let rescuer = Worker::start(&cluster, "finisher", &["--lease-ms", "60000"]);
    let runs = cluster.wait_all_ended(Duration::from_secs(30), &[&rescuer]).await;
    assert!(runs.iter().all(|r| r.state == RunState::Succeeded), "{runs:#?}");
    let counts = side_effects(&instant::count(&cluster.effects(&projects).await));
    assert!(counts.values().all(|c| *c == KeyCount { invoked: 1, created: 1 }), "{counts:?}");
    rescuer.stop();
    cluster.finish().await;
}

/// An idle worker polling only once a minute picks up a newly queued run
/// within seconds: it was woken by NOTIFY, not by its poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_notify_not_by_polling() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::new().await;
    let projects = cluster.queue(1, 0, 2).await;
    let mut worker = Worker::start(&cluster, "sleeper", &["--poll-ms", "60000", "--health-addr", ANY_PORT]);
    let port = worker.health_port();
    let (status, body) = http_get(port, "/health/ready", Duration::from_secs(20), true).await;
    assert_eq!(status, 200, "{body}");
    // A first run shows the worker claiming; once it has ended, the worker
    // finds nothing more and waits, idle.
    cluster.add_run(&projects[0], 1, chrono::Utc::now()).await;
    let first = cluster.wait_all_ended(Duration::from_secs(20), &[&worker]).await;
    assert_eq!(first[0].state, RunState::Succeeded);
    let queued = Instant::now();
    let run = cluster.add_run(&projects[0], 2, chrono::Utc::now()).await;
    let runs = cluster.wait_all_ended(Duration::from_secs(20), &[&worker]).await;
    let took = queued.elapsed();
    assert_eq!(runs.iter().find(|r| r.id == run.id).unwrap().state, RunState::Succeeded);
    assert!(took < Duration::from_secs(10), "woken at once, not at the 60 s poll: {took:?}");
    eprintln!("queued to succeeded on an idle worker: {took:?}");
    worker.stop();
    cluster.finish().await;
}

/// Waits until the agent has started `n` times in `projects`.
async fn wait_agent_started(cluster: &Cluster, projects: &[Project], n: usize, worker: &Worker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = cluster.effects(projects).await.iter().filter(|e| e.kind == EffectKind::Agent).count();
        if started >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the agent never started\n{}", worker.tail());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn crash_postgres(script: &Path) {
    let out = Command::new(script).arg("crash").output().unwrap();
    assert!(out.status.success(), "crash and restart failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Health listeners bind port 0; the ready file says where they are.
const ANY_PORT: &str = "127.0.0.1:0";

/// A plain HTTP/1.0 GET on loopback, retried until it connects (and, with
/// `until_ok`, until it stops answering 503) or `limit` passes. Returns the
/// status code and the body.
async fn http_get(port: u16, path: &str, limit: Duration, until_ok: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + limit;
    loop {
        let answer = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
            let mut text = String::new();
            s.read_to_string(&mut text).await?;
            Ok::<_, std::io::Error>(text)
        };
        match answer.await {
            Ok(text) => {
                let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
                if status == 503 && until_ok && Instant::now() < deadline {
                    // not an assertion: the poll interval of a deadline-bounded wait
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                return (status, body);
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "health endpoint on port {port} never answered: {e}");
                // not an assertion: the poll interval of a deadline-bounded wait
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
