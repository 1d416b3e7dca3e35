//! The error type of `paid-agents`.

/// What can go wrong configuring or running an agent.
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
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Config { field, message } => {
                paid_core::Error::InvalidInput { what: format!("agent.{field}"), message }
            }
        }
    }
}
