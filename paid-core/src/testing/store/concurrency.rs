//! Two handles on one database, writing at once.

use pretty_assertions::assert_eq;

use super::*;

/// Two handles on one database (`a` and `b`, e.g. two connections to one
/// file) write at once from two tasks; nothing is lost, counted twice, or
/// claimed twice. Needs a tokio runtime; a multi-threaded one makes the race
/// real.
pub async fn concurrent_writers(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const N: u64 = 200;
    let project = seed_roomy(&*a, "widgets").await;
    let log_run = queue(&*a, &NewRun { priority: -1, ..fixtures::new_run(project.id, 0) }).await;
    let capped_run = queue(&*b, &NewRun { priority: -1, ..fixtures::new_run(project.id, 1) }).await;
    assert_eq!(b.run(log_run.id).await.unwrap(), log_run, "both handles see one database");

    let writer = |store: Arc<dyn Store>, name: &'static str, first_issue: u64| {
        let (log_run, capped_run) = (log_run.id, capped_run.id);
        let project = project.id;
        tokio::spawn(async move {
            for i in 0..N {
                let text = format!("{name}{i:03}\n");
                let log = AppendLog {
                    run_id: log_run,
                    stream: LogStream::Stdout,
                    text: &text,
                    cap_bytes: 1 << 20,
                    at: at(1),
                };
                assert_eq!(store.append_log(&log).await.unwrap(), LogAppend { stored: 5, truncated: false });
                let capped = AppendLog { run_id: capped_run, cap_bytes: 500, ..log };
                store.append_log(&capped).await.unwrap();
                if i % 4 == 0 {
                    store.create_run(&fixtures::new_run(project, first_issue + i)).await.unwrap();
                }
            }
        })
    };
    let (ra, rb) = tokio::join!(writer(a.clone(), "a", 1_000), writer(b.clone(), "b", 2_000));
    ra.unwrap();
    rb.unwrap();

    let logs = a.logs(log_run.id, 0).await.unwrap();
    assert_eq!(logs.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=2 * N).collect::<Vec<_>>(), "seq has no gaps");
    for name in ["a", "b"] {
        let mine: Vec<String> = logs.iter().filter(|c| c.text.starts_with(name)).map(|c| c.text.clone()).collect();
        let want: Vec<String> = (0..N).map(|i| format!("{name}{i:03}\n")).collect();
        assert_eq!(mine, want, "every append of {name}, in its order");
    }

    let capped = b.logs(capped_run.id, 0).await.unwrap();
    let kept: usize = capped.iter().filter(|c| c.text != TRUNCATION_MARKER).map(|c| c.text.len()).sum();
    assert_eq!(kept, 500, "the cap holds under concurrent appends");
    assert_eq!(capped.iter().filter(|c| c.text == TRUNCATION_MARKER).count(), 1, "one marker");
    assert_eq!(capped.last().map(|c| c.text.as_str()), Some(TRUNCATION_MARKER));

    let all = a.runs(&RunFilter { project_id: Some(project.id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(all.len() as u64, 2 + 2 * N / 4);

    // Both handles claim until nothing is left: each run exactly once.
    let claimer = |store: Arc<dyn Store>, owner: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(run) = store.claim(&claim_req(owner, hour(), at(10))).await.unwrap() {
                assert_eq!(run.lease_owner.as_deref(), Some(owner));
                got.push(run.id);
            }
            got
        })
    };
    let (ca, cb) = tokio::join!(claimer(a.clone(), OWNER), claimer(b.clone(), OTHER));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let claimed: BTreeSet<_> = ca.iter().chain(&cb).copied().collect();
    assert_eq!(claimed.len(), ca.len() + cb.len(), "no run was claimed twice");
    assert_eq!(claimed, all.iter().map(|r| r.id).collect::<BTreeSet<_>>(), "every run was claimed");

    // Both handles record the same delivery keys: each is new exactly once.
    let recorder = |store: Arc<dyn Store>| {
        tokio::spawn(async move {
            let mut firsts = BTreeSet::new();
            for i in 0..50 {
                let key = format!("github:{i}");
                if store.record_delivery(&key, at(20), at(0)).await.unwrap() {
                    firsts.insert(key);
                }
            }
            firsts
        })
    };
    let (da, db) = tokio::join!(recorder(a.clone()), recorder(b.clone()));
    let (da, db) = (da.unwrap(), db.unwrap());
    assert!(da.is_disjoint(&db), "no delivery key was new on both handles");
    assert_eq!(da.len() + db.len(), 50, "every delivery key was new on one handle");
}
