//! The error type of `paid-agents`.

/// What can go wrong configuring or running an agent.
///
/// Converts into [`paid_core::Error`] by meaning: configuration mistakes
/// become `InvalidInput` naming the setting, so the engine reports which key
/// to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The agent's configuration is invalid.
    #[error("invalid agent configuration {field}: {message}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A template (a prompt, an instruction file or a plugin's command line)
    /// does not parse or does not render.
    #[error("template {name} does not render: {message}")]
    Template {
        /// Which template, e.g. `plugin my-cli command`.
        name: String,
        /// What minijinja said.
        message: String,
    },
    /// A regular expression of a config-defined plugin does not compile.
    #[error("plugin {plugin}: output rule {rule} is not a valid regular expression: {message}")]
    Regex {
        /// The plugin kind.
        plugin: String,
        /// Which rule, e.g. `output.cost_usd`.
        rule: String,
        /// What the regex crate said.
        message: String,
    },
    /// Two plugins or agents were registered under one kind.
    #[error("an agent of kind {kind:?} is already registered; pick another kind or replace it explicitly")]
    DuplicateKind {
        /// The kind.
        kind: String,
    },
    /// Text meant for the sandbox cannot be carried there (it contains a NUL
    /// byte, which no environment variable can hold).
    #[error("cannot pass {what} into the sandbox: {message}")]
    Payload {
        /// What was being passed, e.g. `the prompt`.
        what: &'static str,
        /// Why.
        message: String,
    },
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Config { field, message } => {
                paid_core::Error::InvalidInput { what: format!("agent.{field}"), message }
            }
            Error::Template { name, message } => {
                paid_core::Error::InvalidInput { what: format!("template {name}"), message }
            }
            Error::Regex { plugin, rule, message } => {
                paid_core::Error::InvalidInput { what: format!("plugin {plugin} {rule}"), message }
            }
            e @ Error::DuplicateKind { .. } => {
                paid_core::Error::InvalidInput { what: "agent.kind".into(), message: e.to_string() }
            }
            e @ Error::Payload { .. } => paid_core::Error::Agent(e.to_string()),
        }
    }
}
