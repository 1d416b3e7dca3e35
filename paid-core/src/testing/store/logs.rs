//! Run logs: caps, paging, pruning ([`RunLog`](crate::RunLog)).

use pretty_assertions::assert_eq;

use super::*;

/// Appends stop at the cap: the part that fits is kept, the marker is stored
/// once, and later appends store nothing.
pub async fn logs_are_bounded(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let cap = 64;
    let errors = "e".repeat(50);

    assert_eq!(
        append(s, &run, LogStream::Stdout, "hello\n", cap, at(1)).await,
        LogAppend { stored: 6, truncated: false }
    );
    assert_eq!(
        append(s, &run, LogStream::Stderr, &errors, cap, at(2)).await,
        LogAppend { stored: 50, truncated: false }
    );
    assert_eq!(
        append(s, &run, LogStream::Stdout, "0123456789", cap, at_millis(3_003)).await,
        LogAppend { stored: 8, truncated: true }
    );
    assert_eq!(append(s, &run, LogStream::Stdout, "more", cap, at(4)).await, LogAppend { stored: 0, truncated: true });
    assert_eq!(
        append(s, &run, LogStream::System, "[exit 1]", cap, at(5)).await,
        LogAppend { stored: 0, truncated: true }
    );

    let logs = s.logs(run.id, 0).await.unwrap();
    assert_eq!(
        logs,
        vec![
            chunk(&run, 1, LogStream::Stdout, "hello\n", at(1)),
            chunk(&run, 2, LogStream::Stderr, &errors, at(2)),
            chunk(&run, 3, LogStream::Stdout, "01234567", at_millis(3_003)),
            chunk(&run, 4, LogStream::System, TRUNCATION_MARKER, at_millis(3_003)),
        ]
    );
    let kept: usize = logs.iter().filter(|c| c.text != TRUNCATION_MARKER).map(|c| c.text.len()).sum();
    assert_eq!(kept, cap);

    let other = queue(s, &fixtures::new_run(project.id, 2)).await;
    assert_eq!(
        append(s, &other, LogStream::Stdout, "fresh", cap, at(6)).await,
        LogAppend { stored: 5, truncated: false }
    );
    assert_eq!(s.logs(other.id, 0).await.unwrap(), vec![chunk(&other, 1, LogStream::Stdout, "fresh", at(6))]);
}

/// The cap's edge cases: an exact fill, a zero cap, a cut inside a
/// multi-byte character.
pub async fn logs_cap_edges(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let mut issue = 0;
    let mut fresh = async || {
        issue += 1;
        queue(s, &fixtures::new_run(project.id, issue)).await
    };

    let exact = fresh().await;
    let full = append(s, &exact, LogStream::Stdout, "0123456789", 10, at(1)).await;
    assert_eq!(full, LogAppend { stored: 10, truncated: false }, "filling the cap exactly is not a cut");
    let over = append(s, &exact, LogStream::Stdout, "x", 10, at(2)).await;
    assert_eq!(over, LogAppend { stored: 0, truncated: true });
    assert_eq!(
        s.logs(exact.id, 0).await.unwrap(),
        vec![
            chunk(&exact, 1, LogStream::Stdout, "0123456789", at(1)),
            chunk(&exact, 2, LogStream::System, TRUNCATION_MARKER, at(2)),
        ]
    );

    let zero = fresh().await;
    assert_eq!(append(s, &zero, LogStream::Stderr, "x", 0, at(1)).await, LogAppend { stored: 0, truncated: true });
    assert_eq!(s.logs(zero.id, 0).await.unwrap(), vec![chunk(&zero, 1, LogStream::System, TRUNCATION_MARKER, at(1))]);

    // "é" is two bytes: a cap of 5 keeps two of three, a cap of 3 keeps one.
    for (cap, kept) in [(5, "éé"), (3, "é")] {
        let run = fresh().await;
        let got = append(s, &run, LogStream::Stdout, "ééé", cap, at(1)).await;
        assert_eq!(got, LogAppend { stored: kept.len(), truncated: true });
        assert_eq!(
            s.logs(run.id, 0).await.unwrap(),
            vec![
                chunk(&run, 1, LogStream::Stdout, kept, at(1)),
                chunk(&run, 2, LogStream::System, TRUNCATION_MARKER, at(1)),
            ]
        );
    }
}

/// `logs(id, after)` returns the chunks after `after`, in order.
pub async fn logs_page_by_seq(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let mut all = Vec::new();
    for i in 1..=5u64 {
        let text = format!("line {i}\n");
        append(s, &run, LogStream::Stdout, &text, 1 << 20, at(i as i64)).await;
        all.push(chunk(&run, i, LogStream::Stdout, &text, at(i as i64)));
    }
    assert_eq!(s.logs(run.id, 0).await.unwrap(), all);
    assert_eq!(s.logs(run.id, 2).await.unwrap(), all[2..].to_vec());
    assert_eq!(s.logs(run.id, 4).await.unwrap(), all[4..].to_vec());
    assert_eq!(s.logs(run.id, 5).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(run.id, 99).await.unwrap(), Vec::<LogChunk>::new());
}

/// `prune_logs` deletes the chunks of runs that ended before the cutoff,
/// counts them, and keeps everything else: active runs' logs, logs of runs
/// that ended at or after the cutoff, and every other record of a pruned run.
pub async fn logs_are_pruned(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other_project = seed(s, "gadgets").await;
    let cap = 1 << 20;
    assert_eq!(s.prune_logs(at(1_000)).await.unwrap(), 0, "nothing to prune in an empty store");

    // Ended at 10 s with three chunks, and with a journal, usage and an outcome.
    let old = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    s.begin_step(old.id, OWNER, RunState::SelectingModel, None, at(1)).await.unwrap();
    for i in 0..3 {
        append(s, &old, LogStream::Stdout, &format!("old {i}\n"), cap, at(2)).await;
    }
    s.record_usage(&fixtures::usage_record(old.id, at(3))).await.unwrap();
    s.record_outcome(&fixtures::outcome(project.id, old.id, at(10))).await.unwrap();
    let old = walk(s, old, OWNER, &[RunState::Failed], at(10)).await;
    let old_steps = s.steps(old.id).await.unwrap();
    assert_eq!(old_steps.len(), 1);

    // Ended in another project at 15 s, one chunk.
    let elsewhere = claimed(s, &fixtures::new_run(other_project.id, 1), OWNER, at(0)).await;
    append(s, &elsewhere, LogStream::Stderr, "elsewhere\n", cap, at(11)).await;
    walk(s, elsewhere.clone(), OWNER, &[RunState::Failed], at(15)).await;

    // Ended exactly at the cutoff (20 s): kept.
    let at_cutoff = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(0)).await;
    append(s, &at_cutoff, LogStream::Stdout, "at cutoff\n", cap, at(19)).await;
    walk(s, at_cutoff.clone(), OWNER, &[RunState::Failed], at(20)).await;

    // Active: one leased and running, one queued. Their logs are older than the cutoff.
    let running = claimed(s, &fixtures::new_run(project.id, 3), OWNER, at(0)).await;
    let running = walk(s, running, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    append(s, &running, LogStream::Stdout, "running\n", cap, at(1)).await;
    let queued = queue(s, &fixtures::new_run(project.id, 4)).await;
    append(s, &queued, LogStream::System, "queued\n", cap, at(1)).await;

    let kept = |run: &Run, text: &str, stream, when| vec![chunk(run, 1, stream, text, when)];
    let running_logs = kept(&running, "running\n", LogStream::Stdout, at(1));
    let queued_logs = kept(&queued, "queued\n", LogStream::System, at(1));
    let cutoff_logs = kept(&at_cutoff, "at cutoff\n", LogStream::Stdout, at(19));

    assert_eq!(s.prune_logs(at(20)).await.unwrap(), 4, "three chunks of one run, one of another");
    assert_eq!(s.logs(old.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(elsewhere.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(at_cutoff.id, 0).await.unwrap(), cutoff_logs, "ended at the cutoff: kept");
    assert_eq!(s.logs(running.id, 0).await.unwrap(), running_logs, "a running run keeps its logs");
    assert_eq!(s.logs(queued.id, 0).await.unwrap(), queued_logs, "a queued run keeps its logs");

    assert_eq!(s.run(old.id).await.unwrap(), old, "the run itself is kept");
    assert_eq!(s.steps(old.id).await.unwrap(), old_steps, "its journal is kept");
    assert_eq!(s.usage(old.id).await.unwrap(), vec![fixtures::usage_record(old.id, at(3))], "its usage is kept");
    assert_eq!(s.outcomes(project.id).await.unwrap(), vec![fixtures::outcome(project.id, old.id, at(10))]);

    assert_eq!(s.prune_logs(at(20)).await.unwrap(), 0, "pruning again deletes nothing");
    assert_eq!(s.prune_logs(at_millis(20_001)).await.unwrap(), 1, "a later cutoff takes the next run");
    assert_eq!(s.logs(at_cutoff.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(running.id, 0).await.unwrap(), running_logs);
    assert_eq!(s.logs(queued.id, 0).await.unwrap(), queued_logs);
}
