//! The Prometheus metrics of DESIGN §8, defined once for every crate.
//!
//! [`Metrics`] holds the metric families. Create one, hand clones of the
//! `Arc` to the engine and adapters, and [`Metrics::register`] it in the
//! registry your `/metrics` endpoint encodes. Recording is lock-free and does
//! no I/O.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use paid_core::metrics::{Metrics, ProjectLabels};
//!
//! let metrics = Metrics::default();
//! let mut registry = Registry::default();
//! metrics.register(&mut registry);
//! metrics.prs_created_total.get_or_create(&ProjectLabels { project_id: "p1".into() }).inc();
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.contains("paid_prs_created_total{project_id=\"p1\"} 1"));
//! ```

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{project_id}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabels {
    /// Project id.
    pub project_id: String,
}

/// `{project_id, agent_type, status}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Project id.
    pub project_id: String,
    /// Agent kind.
    pub agent_type: String,
    /// End state.
    pub status: String,
}

/// `{project_id, agent_type}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// Project id.
    pub project_id: String,
    /// Agent kind.
    pub agent_type: String,
}

/// `{project_id, model, direction}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Project id.
    pub project_id: String,
    /// Model.
    pub model: String,
    /// `input`, `cache_read`, `cache_write`, `output` or `reasoning`.
    pub direction: String,
}

/// `{project_id, model}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Project id.
    pub project_id: String,
    /// Model.
    pub model: String,
}

/// `{project_id, prompt_slug}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromptLabels {
    /// Project id.
    pub project_id: String,
    /// Prompt slug.
    pub prompt_slug: String,
}

/// `{workflow_type}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    /// `execute`, `plan`, `poll`, `evolve`.
    pub workflow_type: String,
}

/// `{type}` of disk usage.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiskLabels {
    /// `repos`, `worktrees`, `logs`, `images`.
    pub r#type: String,
}

/// `{provider, model}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
}

/// `{endpoint, status}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitHubCallLabels {
    /// Endpoint template, e.g. `GET /repos/{owner}/{repo}/issues`.
    pub endpoint: String,
    /// HTTP status.
    pub status: String,
}

/// `{project_id, period}` of a budget.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// Project id.
    pub project_id: String,
    /// `day` or `month` (UTC).
    pub period: String,
}

/// `{token_id}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenIdLabels {
    /// Which token (never the token itself).
    pub token_id: String,
}

type SecondsHistograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

fn iterations() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0])
}

/// Every metric of DESIGN §8. Clones share the same values.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `paid_agent_runs_total{project_id,agent_type,status}`: runs by end state.
    pub agent_runs_total: Family<RunLabels, Counter>,
    /// `paid_prs_created_total{project_id}`.
    pub prs_created_total: Family<ProjectLabels, Counter>,
    /// `paid_agent_run_duration_seconds{project_id,agent_type}`: queued to end.
    pub agent_run_duration_seconds: SecondsHistograms<AgentLabels>,
    /// `paid_iterations_to_complete{project_id,agent_type}`.
    pub iterations_to_complete: SecondsHistograms<AgentLabels>,
    /// `paid_tokens_used_total{project_id,model,direction}`.
    pub tokens_used_total: Family<TokenLabels, Counter>,
    /// `paid_cost_cents_total{project_id,model}`.
    pub cost_cents_total: Family<ModelLabels, Counter<f64, AtomicU64>>,
    /// `paid_quality_score{project_id,prompt_slug}`.
    pub quality_score: Family<PromptLabels, FloatGauge>,
    /// `paid_pr_merge_rate{project_id}`.
    pub pr_merge_rate: Family<ProjectLabels, FloatGauge>,
    /// `paid_active_workflows{workflow_type}`.
    pub active_workflows: Family<WorkflowLabels, Gauge>,
    /// `paid_active_containers{project_id}`.
    pub active_containers: Family<ProjectLabels, Gauge>,
    /// `paid_worktrees{project_id}`: worktrees on disk. DESIGN §8 spells it
    /// `paid_worktrees_total`, but a gauge must not end in `_total`
    /// (OpenMetrics; promtool flags it).
    pub worktrees: Family<ProjectLabels, Gauge>,
    /// `paid_container_startup_seconds`.
    pub container_startup_seconds: Histogram,
    /// `paid_disk_usage_bytes{type}`.
    pub disk_usage_bytes: Family<DiskLabels, Gauge>,
    /// `paid_llm_request_seconds{provider,model}`.
    pub llm_request_seconds: SecondsHistograms<LlmLabels>,
    /// `paid_github_api_calls_total{endpoint,status}`.
    pub github_api_calls_total: Family<GitHubCallLabels, Counter>,
    /// `paid_github_rate_limit_remaining{token_id}`.
    pub github_rate_limit_remaining: Family<TokenIdLabels, Gauge>,
    /// `paid_budget_limit_usd{project_id,period}`: a project's cap.
    pub budget_limit_usd: Family<BudgetLabels, FloatGauge>,
    /// `paid_budget_spent_usd{project_id,period}`: spent in the period.
    pub budget_spent_usd: Family<BudgetLabels, FloatGauge>,
    /// `paid_budget_reserved_usd{project_id,period}`: held by requests in flight.
    pub budget_reserved_usd: Family<BudgetLabels, FloatGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            agent_runs_total: Family::default(),
            prs_created_total: Family::default(),
            agent_run_duration_seconds: Family::new_with_constructor(seconds),
            iterations_to_complete: Family::new_with_constructor(iterations),
            tokens_used_total: Family::default(),
            cost_cents_total: Family::default(),
            quality_score: Family::default(),
            pr_merge_rate: Family::default(),
            active_workflows: Family::default(),
            active_containers: Family::default(),
            worktrees: Family::default(),
            container_startup_seconds: seconds(),
            disk_usage_bytes: Family::default(),
            llm_request_seconds: Family::new_with_constructor(seconds),
            github_api_calls_total: Family::default(),
            github_rate_limit_remaining: Family::default(),
            budget_limit_usd: Family::default(),
            budget_spent_usd: Family::default(),
            budget_reserved_usd: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric (by clone) in `registry` under the names of DESIGN §8.
    pub fn register(&self, registry: &mut Registry) {
        // Counters get `_total` appended by the encoder.
        registry.register("paid_agent_runs", "Agent runs by end state", self.agent_runs_total.clone());
        registry.register("paid_prs_created", "Pull requests created", self.prs_created_total.clone());
        registry.register(
            "paid_agent_run_duration_seconds",
            "Run duration from queued to end state",
            self.agent_run_duration_seconds.clone(),
        );
        registry.register(
            "paid_iterations_to_complete",
            "Agent iterations a successful run needed",
            self.iterations_to_complete.clone(),
        );
        registry.register("paid_tokens_used", "LLM tokens used", self.tokens_used_total.clone());
        registry.register("paid_cost_cents", "LLM cost in US cents", self.cost_cents_total.clone());
        registry.register("paid_quality_score", "Mean quality score", self.quality_score.clone());
        registry.register("paid_pr_merge_rate", "Share of Paid PRs merged", self.pr_merge_rate.clone());
        registry.register("paid_active_workflows", "Workflows in progress", self.active_workflows.clone());
        registry.register("paid_active_containers", "Live sandboxes", self.active_containers.clone());
        registry.register("paid_worktrees", "Worktrees on disk", self.worktrees.clone());
        registry.register(
            "paid_container_startup_seconds",
            "Time to a ready sandbox",
            self.container_startup_seconds.clone(),
        );
        registry.register("paid_disk_usage_bytes", "Disk used by type", self.disk_usage_bytes.clone());
        registry.register("paid_llm_request_seconds", "LLM request latency", self.llm_request_seconds.clone());
        registry.register("paid_github_api_calls", "GitHub API calls", self.github_api_calls_total.clone());
        registry.register(
            "paid_github_rate_limit_remaining",
            "GitHub rate limit remaining",
            self.github_rate_limit_remaining.clone(),
        );
        registry.register("paid_budget_limit_usd", "A project's cost cap per period", self.budget_limit_usd.clone());
        registry.register("paid_budget_spent_usd", "A project's spend in the period", self.budget_spent_usd.clone());
        registry.register(
            "paid_budget_reserved_usd",
            "A project's spend held by LLM requests in flight",
            self.budget_reserved_usd.clone(),
        );
    }
}
