//! Token and cost counters for the usage agents report themselves (the
//! metering proxy counts what passes through it).

use std::sync::Arc;

use paid_core::Store;
use paid_core::engine::{Engine, EngineEvent};
use paid_core::metrics::{Metrics, ModelLabels, TokenLabels};
use tokio_util::sync::CancellationToken;

/// Adds the usage agents reported for each ended run to the token and cost
/// counters (the metering proxy records what passes through it).
pub(crate) async fn usage_metrics(
    engine: Engine,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut events = engine.subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let (run_id, to) = match event {
            Ok(EngineEvent::Transition { run_id, to, .. }) => (run_id, to),
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if !to.is_terminal() {
            continue;
        }
        let (Ok(run), Ok(usage)) = (store.run(run_id).await, store.usage(run_id).await) else { continue };
        let project_id = run.project_id.to_string();
        // The proxy counts what it meters itself; only what agents reported
        // (provider `agent:<kind>`) is added here.
        for u in usage.into_iter().filter(paid_core::UsageRecord::is_reported) {
            for (direction, n) in [
                ("input", u.usage.input),
                ("cache_read", u.usage.cache_read),
                ("cache_write", u.usage.cache_write),
                ("output", u.usage.output),
                ("reasoning", u.usage.reasoning),
            ] {
                if n > 0 {
                    metrics
                        .tokens_used_total
                        .get_or_create(&TokenLabels {
                            project_id: project_id.clone(),
                            model: u.model.clone(),
                            direction: direction.into(),
                        })
                        .inc_by(n);
                }
            }
            if let Some(m) = u.cost_micros {
                metrics
                    .cost_cents_total
                    .get_or_create(&ModelLabels { project_id: project_id.clone(), model: u.model.clone() })
                    .inc_by(m as f64 / 10_000.0);
            }
        }
    }
}
