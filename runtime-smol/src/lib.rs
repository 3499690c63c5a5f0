//! Placeholder until its issue lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
