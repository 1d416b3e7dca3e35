//! The failover layer: tries providers (and models) in a configured order,
//! moving on when one fails in a way another might not.
//!
//! Rate limits, quota and auth failures, transient errors and prompts too
//! long for a model's context all move to the next route; a permanent error
//! (the request itself is wrong) is returned at once. A route that failed
//! `trip_after` times in a row is skipped for `cooldown`, unless every route
//! is cooling down.
//!
//! ```
//! use std::sync::Arc;
//! use paid_llm::failover::{Failover, Route};
//! use paid_llm::providers::{ProviderConfig, ProviderKind, anthropic::AnthropicProvider, openai::OpenAiProvider};
//!
//! let anthropic = AnthropicProvider::new(ProviderConfig::public(ProviderKind::Anthropic, "sk-a".into())).unwrap();
//! let openai = OpenAiProvider::new(ProviderConfig::public(ProviderKind::OpenAi, "sk-o".into())).unwrap();
//! let llm = Failover::new(vec![
//!     Route::new(Arc::new(anthropic)),                      // the request's own model
//!     Route::new(Arc::new(openai)).with_model("gpt-5"),     // then this one
//! ]);
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use paid_core::{ChatEvent, ChatRequest, ChatResponse, LlmProvider};

use crate::error::classify;

/// One provider in the failover order, optionally with the model to use on it.
#[derive(Clone)]
pub struct Route {
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
    /// The model to ask it for; the request's model when `None`.
    pub model: Option<String>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("provider", &self.provider.name()).field("model", &self.model).finish()
    }
}

impl Route {
    /// `provider`, with the request's model.
    pub fn new(provider: Arc<dyn LlmProvider>) -> Self {
        Self { provider, model: None }
    }

    /// The same, asking for `model`.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    cooling_until: Option<Instant>,
}

/// Providers tried in order.
#[derive(Debug)]
pub struct Failover {
    routes: Vec<Route>,
    trip_after: u32,
    cooldown: Duration,
    health: Mutex<Vec<Health>>,
}

impl Failover {
    /// Tries `routes` in order. Routes trip after 3 consecutive failures
    /// and cool down for 60 s.
    pub fn new(routes: Vec<Route>) -> Self {
        let n = routes.len();
        Self {
            routes,
            trip_after: 3,
            cooldown: Duration::from_secs(60),
            health: Mutex::new(vec![Health::default(); n]),
        }
    }

    /// Sets when a route trips and how long it is skipped.
    pub fn with_breaker(mut self, trip_after: u32, cooldown: Duration) -> Self {
        self.trip_after = trip_after.max(1);
        self.cooldown = cooldown;
        self
    }

    /// Route indexes in the order to try now: healthy ones first.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let (mut ready, cooling): (Vec<usize>, Vec<usize>) =
            (0..self.routes.len()).partition(|i| health[*i].cooling_until.is_none_or(|t| t <= now));
        ready.extend(cooling);
        ready
    }

    fn report(&self, i: usize, ok: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = &mut health[i];
        if ok {
            *h = Health::default();
        } else {
            h.failures += 1;
            if h.failures >= self.trip_after {
                h.cooling_until = Some(Instant::now() + self.cooldown);
            }
        }
    }

    fn request_for(&self, i: usize, req: &ChatRequest) -> ChatRequest {
        match &self.routes[i].model {
            Some(m) => ChatRequest { model: m.clone(), ..req.clone() },
            None => req.clone(),
        }
    }

    async fn attempt<T, F, Fut>(&self, req: &ChatRequest, call: F) -> paid_core::Result<T>
    where
        F: Fn(Arc<dyn LlmProvider>, ChatRequest) -> Fut,
        Fut: std::future::Future<Output = paid_core::Result<T>>,
    {
        let mut last = None;
        for i in self.order() {
            let route = &self.routes[i];
            match call(route.provider.clone(), self.request_for(i, req)).await {
                Ok(v) => {
                    self.report(i, true);
                    return Ok(v);
                }
                Err(e) => {
                    let (class, _) = classify(&e);
                    self.report(i, false);
                    if !class.may_fail_over() {
                        return Err(e);
                    }
                    tracing::warn!(provider = route.provider.name(), class = %class, error = %e, "failing over");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| paid_core::Error::InvalidInput {
            what: "failover".into(),
            message: "no provider is configured".into(),
        }))
    }
}

#[async_trait]
impl LlmProvider for Failover {
    fn name(&self) -> &str {
        "failover"
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        self.attempt(req, |p, r| async move { p.complete(&r).await }).await
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        self.attempt(req, |p, r| async move { p.stream(&r).await }).await
    }
}
