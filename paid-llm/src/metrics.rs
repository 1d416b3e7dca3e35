//! Recording LLM metrics into the shared [`paid_core::metrics::Metrics`].
//!
//! The metric families (`paid_llm_request_seconds{provider,model}`,
//! `paid_tokens_used_total{project_id,model,direction}`,
//! `paid_cost_cents_total{project_id,model}`) are defined once in
//! `paid-core`; the embedder creates one [`Metrics`], registers it in the
//! registry its `/metrics` endpoint serves, and passes it here. Without one,
//! a private instance is used and nothing is exported.
//!
//! [`Metered`] is the layer that times any [`LlmProvider`].
//!
//! ```
//! use std::sync::Arc;
//! use paid_core::metrics::Metrics;
//! use paid_llm::metrics::LlmMetrics;
//!
//! let shared = Arc::new(Metrics::default());
//! let mut registry = prometheus_client::registry::Registry::default();
//! shared.register(&mut registry);
//! let metrics = LlmMetrics::new(shared);
//! metrics.record_usage("p1", "gpt-5", &paid_core::Usage { input: 10, ..Default::default() }, Some(1_500));
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.contains(r#"paid_tokens_used_total{project_id="p1",model="gpt-5",direction="input"} 10"#));
//! assert!(text.contains(r#"paid_cost_cents_total{project_id="p1",model="gpt-5"} 0.15"#));
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use paid_core::metrics::{LlmLabels, Metrics, ModelLabels, TokenLabels};
use paid_core::{ChatEvent, ChatRequest, ChatResponse, LlmProvider, Usage};

use crate::prices::PriceRegistry;

/// Records LLM metrics. Clones share the same values.
#[derive(Debug, Clone)]
pub struct LlmMetrics {
    inner: Arc<Metrics>,
}

impl Default for LlmMetrics {
    fn default() -> Self {
        Self::new(Arc::new(Metrics::default()))
    }
}

impl LlmMetrics {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { inner: metrics }
    }

    /// The underlying metric families.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner
    }

    /// One request to `provider`/`model` took `elapsed`.
    pub fn record_request(&self, provider: &str, model: &str, elapsed: Duration) {
        self.inner
            .llm_request_seconds
            .get_or_create(&LlmLabels { provider: provider.to_string(), model: model.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    /// `usage` was spent on `model` for `project_id`, costing `cost_micros`
    /// (nothing is added to the cost when it is unknown).
    pub fn record_usage(&self, project_id: &str, model: &str, usage: &Usage, cost_micros: Option<i64>) {
        let buckets = [
            ("input", usage.input),
            ("cache_read", usage.cache_read),
            ("cache_write", usage.cache_write),
            ("output", usage.output),
            ("reasoning", usage.reasoning),
        ];
        for (direction, n) in buckets.into_iter().filter(|(_, n)| *n > 0) {
            self.inner
                .tokens_used_total
                .get_or_create(&TokenLabels {
                    project_id: project_id.to_string(),
                    model: model.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(n);
        }
        if let Some(micros) = cost_micros.filter(|c| *c > 0) {
            self.inner
                .cost_cents_total
                .get_or_create(&ModelLabels { project_id: project_id.to_string(), model: model.to_string() })
                .inc_by(micros as f64 / 10_000.0);
        }
    }
}

/// A layer timing every call of the wrapped provider into
/// `paid_llm_request_seconds` and counting its tokens under `project_id`.
///
/// For streams, the time is taken when the stream ends.
#[derive(Clone)]
pub struct Metered {
    inner: Arc<dyn LlmProvider>,
    metrics: LlmMetrics,
    project_id: String,
    prices: Option<Arc<PriceRegistry>>,
}

impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered").field("inner", &self.inner.name()).field("project_id", &self.project_id).finish()
    }
}

impl Metered {
    /// Wraps `inner`; tokens are counted under `project_id` (may be empty).
    pub fn new(inner: Arc<dyn LlmProvider>, metrics: LlmMetrics, project_id: impl Into<String>) -> Self {
        Self { inner, metrics, project_id: project_id.into(), prices: None }
    }

    /// Also adds the cost of each response to `paid_cost_cents_total`.
    pub fn with_prices(mut self, prices: Arc<PriceRegistry>) -> Self {
        self.prices = Some(prices);
        self
    }

    fn cost(&self, model: &str, usage: &Usage) -> Option<i64> {
        self.prices.as_ref()?.cost_micros(self.inner.name(), model, usage, chrono::Utc::now())
    }
}

#[async_trait]
impl LlmProvider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        let started = Instant::now();
        let result = self.inner.complete(req).await;
        self.metrics.record_request(self.inner.name(), &req.model, started.elapsed());
        if let Ok(resp) = &result {
            self.metrics.record_usage(&self.project_id, &req.model, &resp.usage, self.cost(&req.model, &resp.usage));
        }
        result
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        let started = Instant::now();
        let stream = match self.inner.stream(req).await {
            Ok(s) => s,
            Err(e) => {
                self.metrics.record_request(self.inner.name(), &req.model, started.elapsed());
                return Err(e);
            }
        };
        let metrics = self.metrics.clone();
        let provider = self.inner.name().to_string();
        let model = req.model.clone();
        let project = self.project_id.clone();
        let prices = self.prices.clone();
        Ok(stream
            .inspect(move |ev| match ev {
                Ok(ChatEvent::Done { usage, .. }) => {
                    metrics.record_request(&provider, &model, started.elapsed());
                    let cost =
                        prices.as_ref().and_then(|p| p.cost_micros(&provider, &model, usage, chrono::Utc::now()));
                    metrics.record_usage(&project, &model, usage, cost);
                }
                Err(_) => metrics.record_request(&provider, &model, started.elapsed()),
                _ => {}
            })
            .boxed())
    }
}
