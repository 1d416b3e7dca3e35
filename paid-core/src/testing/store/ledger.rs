//! Usage, its aggregates, model decisions and outcomes ([`Ledger`](crate::Ledger)).

use pretty_assertions::assert_eq;

use super::*;

/// Usage records read back whole, per run, in order.
pub async fn usage_records(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let other = queue(s, &fixtures::new_run(project.id, 2)).await;

    let u1 = fixtures::usage_record(run.id, at(1));
    let u2 = UsageRecord {
        usage: Usage::default(),
        cost_micros: None,
        status: "529".into(),
        ..fixtures::usage_record(run.id, at(1))
    };
    let u3 = UsageRecord {
        provider: "openai".into(),
        model: "gpt".into(),
        usage: Usage { input: 1 << 40, ..Usage::default() },
        ..fixtures::usage_record(run.id, at_millis(2_002))
    };
    let o1 = fixtures::usage_record(other.id, at(0));
    for u in [&u1, &u2, &o1, &u3] {
        s.record_usage(u).await.unwrap();
    }
    assert_eq!(s.usage(run.id).await.unwrap(), vec![u1, u2, u3]);
    assert_eq!(s.usage(other.id).await.unwrap(), vec![o1]);
}

/// Every usage record of every run, read one run at a time with `usage`:
/// the reference the aggregates are checked against.
async fn all_usage(store: &dyn Store) -> Vec<(Run, Vec<UsageRecord>)> {
    let mut all = Vec::new();
    for run in store.runs(&RunFilter::default()).await.unwrap() {
        let usage = store.usage(run.id).await.unwrap();
        all.push((run, usage));
    }
    all
}

/// What `spend(q)` must answer, summed from `all` record by record.
fn spend_of(all: &[(Run, Vec<UsageRecord>)], q: &SpendQuery) -> Vec<Spend> {
    let mut groups: BTreeMap<_, UsageTotals> = BTreeMap::new();
    for (run, records) in all {
        if q.project_id.is_some_and(|p| p != run.project_id) || q.run_id.is_some_and(|r| r != run.id) {
            continue;
        }
        let key = match q.group {
            SpendGroup::Project => (run.project_id, None),
            SpendGroup::Run => (run.project_id, Some(run.id)),
        };
        for r in records.iter().filter(|r| q.since.is_none_or(|since| r.at >= since)) {
            groups.entry(key).or_default().add(r);
        }
    }
    groups.into_iter().map(|((project_id, run_id), totals)| Spend { project_id, run_id, totals }).collect()
}

/// What `daily_costs(q)` must answer, summed from `all` record by record.
fn daily_costs_of(all: &[(Run, Vec<UsageRecord>)], q: &CostQuery) -> Vec<DailyCost> {
    let mut groups: BTreeMap<_, UsageTotals> = BTreeMap::new();
    for (run, records) in all {
        if q.project_id.is_some_and(|p| p != run.project_id) {
            continue;
        }
        for r in records.iter().filter(|r| q.since.is_none_or(|since| r.at >= since)) {
            groups.entry((r.at.date_naive(), run.project_id, r.model.clone())).or_default().add(r);
        }
    }
    groups.into_iter().map(|((day, project_id, model), totals)| DailyCost { day, project_id, model, totals }).collect()
}

/// `spend` and `daily_costs` equal the sums of what `usage` returns, over
/// two projects, several runs, days and models, priced and unpriced
/// records, for every combination of filters; `since` is inclusive.
pub async fn usage_aggregates_equal_the_sums_of_usage(store: Arc<dyn Store>) {
    const DAY: i64 = 86_400;
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let r1 = queue(s, &fixtures::new_run(p1.id, 1)).await;
    let r2 = queue(s, &fixtures::new_run(p1.id, 2)).await;
    let idle = queue(s, &fixtures::new_run(p1.id, 3)).await;
    let r3 = queue(s, &fixtures::new_run(p2.id, 1)).await;

    let priced = |run: &Run, model: &str, cost: i64, at: Timestamp| UsageRecord {
        model: model.into(),
        cost_micros: Some(cost),
        ..fixtures::usage_record(run.id, at)
    };
    let unpriced = |run: &Run, model: &str, at: Timestamp| UsageRecord {
        model: model.into(),
        cost_micros: None,
        usage: Usage { input: 7, cache_read: 0, cache_write: 3, output: 11, reasoning: 5 },
        status: "529".into(),
        ..fixtures::usage_record(run.id, at)
    };
    let records = [
        priced(&r1, "claude-sonnet", 12_345, at(0)),
        unpriced(&r1, "claude-sonnet", at(10)),
        // The last millisecond of day 1, then the first of day 2.
        priced(&r1, "gpt", 7, at_millis(DAY * 1_000 - 1)),
        priced(&r2, "gpt", 1_000, at(DAY)),
        // Bytewise, "Zeta" sorts before "claude-sonnet".
        unpriced(&r2, "Zeta", at(DAY + 60)),
        priced(&r2, "claude-sonnet", 0, at(2 * DAY + 5)),
        priced(&r3, "claude-sonnet", 12_345, at(0)),
        unpriced(&r3, "gpt", at(DAY + 1)),
    ];
    for r in &records {
        s.record_usage(r).await.unwrap();
    }
    let all = all_usage(s).await;
    assert_eq!(all.iter().map(|(_, u)| u.len()).sum::<usize>(), records.len(), "usage reads every record back");

    // The reference itself, by hand, so that it cannot be vacuous.
    let fixture_usage = fixtures::usage_record(r1.id, at(0)).usage;
    let p2_total = UsageTotals {
        records: 2,
        unpriced_records: 1,
        cost_micros: 12_345,
        usage: Usage {
            input: fixture_usage.input + 7,
            cache_read: fixture_usage.cache_read,
            cache_write: fixture_usage.cache_write + 3,
            output: fixture_usage.output + 11,
            reasoning: fixture_usage.reasoning + 5,
        },
    };
    let per_p2 = SpendQuery::per_project().project(p2.id);
    assert_eq!(spend_of(&all, &per_p2), vec![Spend { project_id: p2.id, run_id: None, totals: p2_total }]);
    assert_eq!(s.spend(&per_p2).await.unwrap(), vec![Spend { project_id: p2.id, run_id: None, totals: p2_total }]);

    let day2 = at(DAY);
    let gone_project = fixtures::project_id();
    let gone_run = fixtures::run_id();
    let sinces = [None, Some(at(5)), Some(at_millis(DAY * 1_000 - 1)), Some(day2), Some(at(3 * DAY))];
    let projects = [None, Some(p1.id), Some(p2.id), Some(gone_project)];
    let runs = [None, Some(r1.id), Some(r3.id), Some(idle.id), Some(gone_run)];
    for group in [SpendGroup::Project, SpendGroup::Run] {
        for since in sinces {
            for project in projects {
                for run in runs {
                    let q = SpendQuery { group, since, project_id: project, run_id: run };
                    assert_eq!(s.spend(&q).await.unwrap(), spend_of(&all, &q), "spend({q:?})");
                }
            }
        }
    }
    for since in sinces {
        for project in projects {
            let q = CostQuery { since, project_id: project };
            assert_eq!(s.daily_costs(&q).await.unwrap(), daily_costs_of(&all, &q), "daily_costs({q:?})");
        }
    }

    // Negative controls: what a filter leaves out is really gone.
    let per_run = s.spend(&SpendQuery::per_run()).await.unwrap();
    let runs_seen: Vec<_> = per_run.iter().map(|g| g.run_id).collect();
    assert_eq!(runs_seen.len(), 3, "one row per run with usage: {runs_seen:?}");
    assert!(!runs_seen.contains(&Some(idle.id)), "a run without usage has no row");
    let since_day2 = s.spend(&SpendQuery::per_run().since(day2)).await.unwrap();
    assert!(since_day2.iter().all(|g| g.run_id != Some(r1.id)), "r1 spent nothing from day 2: {since_day2:?}");
    let p1_since_day2 = s.spend(&SpendQuery::per_project().project(p1.id).since(day2)).await.unwrap();
    assert_eq!(p1_since_day2.len(), 1);
    assert_eq!(
        (
            p1_since_day2[0].totals.records,
            p1_since_day2[0].totals.unpriced_records,
            p1_since_day2[0].totals.cost_micros
        ),
        (3, 1, 1_000),
        "since is inclusive and excludes the millisecond before"
    );
    assert_eq!(s.spend(&SpendQuery::per_project().project(p2.id).run(r1.id)).await.unwrap(), vec![], "filters combine");

    let days = s.daily_costs(&CostQuery::all()).await.unwrap();
    let of = |project: crate::ProjectId, model: &str| -> Vec<(String, u64)> {
        let rows = days.iter().filter(|d| d.project_id == project && d.model == model);
        rows.map(|d| (d.day.to_string(), d.totals.records)).collect()
    };
    assert_eq!(
        of(p1.id, "gpt"),
        vec![("2024-01-01".to_string(), 1), ("2024-01-02".to_string(), 1)],
        "a UTC day ends at its last millisecond"
    );
    let p1_day2: Vec<&str> =
        days.iter().filter(|d| d.project_id == p1.id && d.day.to_string() == "2024-01-02").map(|d| &*d.model).collect();
    assert_eq!(p1_day2, vec!["Zeta", "gpt"], "models in bytewise order");
    assert_eq!(days.len(), 7, "{days:#?}");
}

/// Aggregates over no record are empty, not rows of zeros.
pub async fn usage_aggregates_of_nothing_are_empty(store: Arc<dyn Store>) {
    let s = &*store;
    for group in [SpendGroup::Project, SpendGroup::Run] {
        let q = SpendQuery { group, ..SpendQuery::default() };
        assert_eq!(s.spend(&q).await.unwrap(), Vec::<Spend>::new(), "an empty store");
    }
    assert_eq!(s.daily_costs(&CostQuery::all()).await.unwrap(), Vec::<DailyCost>::new(), "an empty store");

    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    assert_eq!(s.spend(&SpendQuery::per_run()).await.unwrap(), vec![], "runs without usage");
    assert_eq!(s.spend(&SpendQuery::per_project().project(project.id)).await.unwrap(), vec![]);
    assert_eq!(s.daily_costs(&CostQuery::all().project(project.id)).await.unwrap(), vec![]);

    s.record_usage(&fixtures::usage_record(run.id, at(10))).await.unwrap();
    assert_eq!(s.spend(&SpendQuery::per_run().since(at(11))).await.unwrap(), vec![], "everything is older");
    assert_eq!(s.daily_costs(&CostQuery::all().since(at(11))).await.unwrap(), vec![], "everything is older");
    assert_eq!(s.spend(&SpendQuery::per_run().since(at(10))).await.unwrap().len(), 1, "the positive control");
}

/// Sums beyond their type saturate instead of wrapping or failing.
pub async fn usage_aggregates_saturate(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let big = u64::try_from(i64::MAX).unwrap();
    let huge = UsageRecord {
        usage: Usage { input: big, cache_read: big, cache_write: 0, output: 1, reasoning: 0 },
        cost_micros: Some(i64::MAX),
        ..fixtures::usage_record(run.id, at(1))
    };
    for i in 0..3 {
        // Two records: the token sums still fit a u64; the third overflows it.
        let record =
            UsageRecord { usage: Usage { cache_read: if i < 2 { big } else { 0 }, ..huge.usage }, ..huge.clone() };
        s.record_usage(&record).await.unwrap();
    }
    let want = UsageTotals {
        records: 3,
        unpriced_records: 0,
        cost_micros: i64::MAX,
        usage: Usage { input: u64::MAX, cache_read: 2 * big, cache_write: 0, output: 3, reasoning: 0 },
    };
    assert_eq!(UsageTotals::of(&s.usage(run.id).await.unwrap()), want, "the reference saturates");
    let spend = s.spend(&SpendQuery::per_run()).await.unwrap();
    assert_eq!(spend, vec![Spend { project_id: project.id, run_id: Some(run.id), totals: want }]);
    let days = s.daily_costs(&CostQuery::all()).await.unwrap();
    assert_eq!(days.iter().map(|d| d.totals).collect::<Vec<_>>(), vec![want]);
}

/// A run has at most one model decision; recording replaces it.
pub async fn model_decisions(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let other = queue(s, &fixtures::new_run(project.id, 2)).await;
    assert_eq!(s.decision(run.id).await.unwrap(), None);

    let first = fixtures::decision(run.id);
    s.record_decision(&first).await.unwrap();
    assert_eq!(s.decision(run.id).await.unwrap(), Some(first));

    let second = ModelDecision {
        model: "tiny".into(),
        selector: "fixed".into(),
        candidates: Vec::new(),
        budget_micros: None,
        complexity: None,
        at: at(9),
        ..fixtures::decision(run.id)
    };
    s.record_decision(&second).await.unwrap();
    assert_eq!(s.decision(run.id).await.unwrap(), Some(second));
    assert_eq!(s.decision(other.id).await.unwrap(), None);
}

/// Outcomes read back whole, per project, newest first; one per run.
pub async fn outcomes(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let a = queue(s, &fixtures::new_run(p1.id, 1)).await;
    let b = queue(s, &fixtures::new_run(p1.id, 2)).await;
    let c = queue(s, &fixtures::new_run(p2.id, 1)).await;
    assert_eq!(s.outcomes(p1.id).await.unwrap(), Vec::<Outcome>::new());

    let oa = fixtures::outcome(p1.id, a.id, at(10));
    let ob = Outcome {
        pr_merged: None,
        ci_passed: None,
        lint_clean: None,
        tests_passing: None,
        human_vote: Some(-1),
        iterations: 0,
        cost_micros: None,
        quality_score: None,
        ..fixtures::outcome(p1.id, b.id, at_millis(20_020))
    };
    let oc = fixtures::outcome(p2.id, c.id, at(15));
    for o in [&oa, &ob, &oc] {
        s.record_outcome(o).await.unwrap();
    }
    assert_eq!(s.outcomes(p1.id).await.unwrap(), vec![ob.clone(), oa.clone()]);
    assert_eq!(s.outcomes(p2.id).await.unwrap(), vec![oc]);

    let oa2 = Outcome { pr_merged: Some(false), quality_score: Some(0.1), recorded_at: at(30), ..oa };
    s.record_outcome(&oa2).await.unwrap();
    assert_eq!(s.outcomes(p1.id).await.unwrap(), vec![oa2, ob], "recording again replaces");
}
