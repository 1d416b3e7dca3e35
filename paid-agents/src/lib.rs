//! Agents for Paid: implementations of [`paid_core::Agent`].
//!
//! [`CommandAgent`] runs a configured command line inside the run's sandbox.
//! It is the generic base that CLI agents build on: the prompt, model and
//! iteration reach the command as environment variables, and its exit code
//! says whether it completed.
//!
//! ```
//! use paid_agents::CommandAgent;
//! use paid_core::Agent;
//!
//! // An agent that applies a fix with sed; a real one would call a CLI.
//! let agent = CommandAgent::new("sed-fixer", "sed -i 's/a - b/a + b/' calc.sh").unwrap();
//! assert_eq!(agent.kind(), "sed-fixer");
//! ```

mod command;
mod error;

pub use command::CommandAgent;
pub use error::Error;
