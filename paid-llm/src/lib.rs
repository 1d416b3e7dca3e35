//! The LLM layer of Paid: provider clients, usage and cost, the secrets +
//! metering proxy with budgets, and model selectors.
//!
//! Agents in sandboxes never hold a provider key. They call the [`proxy`]
//! with their run's token; the proxy checks it, injects the real key,
//! streams the answer through, meters every token into the store and
//! enforces budgets.
//!
//! ```
//! use std::sync::Arc;
//! use paid_core::{Store, testing::fixtures};
//! use paid_llm::fake::{Canned, FakeUpstream};
//! use paid_llm::proxy::{Proxy, Upstream};
//! use paid_llm::providers::ProviderKind;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A store with a project and a running run.
//! let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory()?);
//! let project = fixtures::project("widgets");
//! store.put_project(&project).await?;
//! let run = store.create_run(&fixtures::new_run(project.id, 1)).await?;
//!
//! // The proxy in front of a (fake) Anthropic, holding the real key.
//! let upstream = FakeUpstream::start().await?;
//! upstream.set_default(Canned::text("Hi!"));
//! let proxy = Proxy::builder(store.clone())
//!     .upstream(Upstream::new(ProviderKind::Anthropic, upstream.url(), Some("sk-ant-real".into())))
//!     .build()?;
//! let server = proxy.spawn("127.0.0.1:0".parse()?).await?;
//!
//! // The sandbox gets a run token and the proxy's address, nothing else.
//! let token = proxy.issue_token(run.id, project.id);
//! let reply: serde_json::Value = paid_llm::providers::http_client()?
//!     .post(format!("{}/anthropic/v1/messages", server.url()))
//!     .header("x-api-key", token.expose())
//!     .header("anthropic-version", "2023-06-01")
//!     .json(&serde_json::json!({
//!         "model": "claude-haiku-4-5", "max_tokens": 100,
//!         "messages": [{"role": "user", "content": "Hello"}]
//!     }))
//!     .send().await?
//!     .json().await?;
//! assert_eq!(reply["content"][0]["text"], "Hi!");
//!
//! // The real key went upstream; the usage is in the store, priced.
//! assert_eq!(upstream.received()[0].header("x-api-key"), Some("sk-ant-real"));
//! proxy.settled().await;
//! let usage = store.usage(run.id).await?;
//! assert_eq!(usage[0].model, "claude-haiku-4-5");
//! assert!(usage[0].cost_micros.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! The parts:
//!
//! - [`providers`]: Anthropic, OpenAI, Gemini and OpenAI-compatible clients
//!   implementing [`paid_core::LlmProvider`], with their wire types;
//! - [`usage`]: each provider's usage into Paid's disjoint buckets;
//! - [`prices`]: the versioned price registry (`data/prices.toml`);
//! - [`retry`], [`failover`], [`metrics`]: layers around any provider;
//! - [`proxy`]: the secrets + metering proxy and its budgets;
//! - [`selectors`]: rules, meta-agent and per-project override selectors;
//! - [`fake`] (feature `fake`): a fake upstream speaking every wire format.

pub mod error;
pub mod failover;
#[cfg(feature = "fake")]
pub mod fake;
pub mod metrics;
pub mod prices;
pub mod providers;
pub mod proxy;
pub mod retry;
pub mod selectors;
mod server;
pub mod usage;

pub use error::{Error, ErrorClass};
pub use server::RunningServer;
