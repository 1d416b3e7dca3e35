//! The built-in [`CliPlugin`]s, one module per CLI.
//!
//! Each parser is tested against recorded samples of its CLI's
//! machine-readable output in `paid-agents/tests/samples/<kind>/`, including
//! an error and a rate-limit case.

use std::sync::Arc;

use crate::plugin::CliPlugin;

mod aider;
mod claude_code;
mod codex;
mod copilot;
mod cursor;
mod gemini;
pub(crate) mod json;
mod opencode;

pub use aider::Aider;
pub use claude_code::ClaudeCode;
pub use codex::Codex;
pub use copilot::Copilot;
pub use cursor::Cursor;
pub use gemini::Gemini;
pub use opencode::OpenCode;

/// Every built-in plugin: `claude-code`, `codex`, `gemini`, `aider`,
/// `copilot`, `cursor`, `opencode`.
pub fn all() -> Vec<Arc<dyn CliPlugin>> {
    vec![
        Arc::new(ClaudeCode),
        Arc::new(Codex),
        Arc::new(Gemini),
        Arc::new(Aider),
        Arc::new(Copilot),
        Arc::new(Cursor),
        Arc::new(OpenCode),
    ]
}
