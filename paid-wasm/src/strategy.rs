//! [`WasmStrategy`]: an [`EvolutionStrategy`] answered by a WASM module.

use std::sync::Arc;

use paid_core::learning::strategy::{
    Choice, ChooseRequest, EvolutionStrategy, FallbackStrategy, MutationContext, MutationPlan, MutationReview,
    MutationSelection, PromoteRequest, Verdict,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, StrategyModule};

/// An [`EvolutionStrategy`] whose decisions come from a [`StrategyModule`],
/// called with the strategy's `params` (its configuration, e.g.
/// `{"epsilon": 0.1}`) in every request.
///
/// Errors name the module. Wrap it in a [`FallbackStrategy`]
/// ([`WasmStrategy::with_fallback`]) so a failing module falls back to the
/// built-in strategy and the run goes on.
#[derive(Debug, Clone)]
pub struct WasmStrategy {
    module: StrategyModule,
    params: serde_json::Value,
}

impl WasmStrategy {
    /// The strategy of `module`, configured with `params`.
    pub fn new(module: StrategyModule, params: serde_json::Value) -> Self {
        Self { module, params }
    }

    /// The module.
    pub fn module(&self) -> &StrategyModule {
        &self.module
    }

    /// This strategy, falling back to the built-in Thompson strategy when it
    /// fails.
    pub fn with_fallback(self) -> FallbackStrategy {
        FallbackStrategy::with_thompson(Arc::new(self))
    }

    /// One typed call through the ABI.
    pub fn call<I: Serialize, O: DeserializeOwned>(&self, call: &str, input: &I) -> Result<O, Error> {
        self.module.call_typed(call, &self.params, input)
    }
}

impl EvolutionStrategy for WasmStrategy {
    fn name(&self) -> &str {
        self.module.name()
    }

    fn choose_variant(&self, req: &ChooseRequest) -> paid_core::Result<Choice> {
        Ok(self.call("choose_variant", req)?)
    }

    fn should_promote(&self, req: &PromoteRequest) -> paid_core::Result<Verdict> {
        Ok(self.call("should_promote", req)?)
    }

    fn propose_mutations(&self, ctx: &MutationContext) -> paid_core::Result<MutationPlan> {
        Ok(self.call("propose_mutations", ctx)?)
    }

    fn review_mutations(&self, review: &MutationReview) -> paid_core::Result<MutationSelection> {
        Ok(self.call("review_mutations", review)?)
    }
}

impl crate::WasmHost {
    /// The strategy in the module at `path`, behind a [`FallbackStrategy`]
    /// to the built-in Thompson strategy. When the module cannot be loaded
    /// (missing, malformed, wrong interface), logs why and returns the
    /// built-in strategy itself, so the caller keeps working either way.
    pub fn strategy_or_builtin(
        &self,
        path: impl AsRef<std::path::Path>,
        params: serde_json::Value,
    ) -> Arc<dyn EvolutionStrategy> {
        match self.load_file(path.as_ref()) {
            Ok(module) => Arc::new(WasmStrategy::new(module, params).with_fallback()),
            Err(error) => {
                tracing::warn!(path = %path.as_ref().display(), %error, "strategy module not loaded; using the built-in strategy");
                Arc::new(paid_core::learning::strategy::ThompsonStrategy)
            }
        }
    }
}
