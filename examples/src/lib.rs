//! Runnable examples of Beethoven for Rust (binaries in `src/bin`):
//!
//! | binary | what it shows |
//! |---|---|
//! | `local_cluster` | the main demo: 5 tokio nodes join, one crashes, one leaves, one restarts on a new port |
//! | `smol_node` | the same node on smol |
//! | `custom_loop` | `beethoven-core` driven by hand on a `std::net::UdpSocket`, no async runtime |
//! | `subscriber` | a `NodeUpdate` callback and the async stream of updates |
//!
//! ```sh
//! cargo run -p beethoven-examples --bin local_cluster
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's code blocks, compiled by `cargo test --doc` so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
