//! The one error of a configuration that cannot work. A module of its own so
//! that the parts of `Config` defined beside their features (`QueryConfig`,
//! `UserEventConfig`) can name it without importing `Config`, which imports them.

/// A configuration value that cannot work, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field's value is outside its range.
    #[error("config field `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
