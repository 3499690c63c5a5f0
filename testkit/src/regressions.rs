//! Where a property test's failing cases are kept, so that real regressions
//! are replayed first on every run and planted bugs never mix with them.
//!
//! The pattern, in an integration test file `tests/<file>.rs`:
//!
//! - the real properties keep their failures in `tests/<file>.proptest-regressions`
//!   (commit it): `failure_persistence: regressions::kept()`. proptest's
//!   default looks for a `lib.rs` or `main.rs` beside the test, finds none in
//!   `tests/`, and prints "FileFailurePersistence::SourceParallel set, but
//!   failed to find lib.rs or main.rs" on every run; this does not;
//! - a test that must *find* a planted bug keeps nothing:
//!   `failure_persistence: regressions::planted()`. Its failures are the point
//!   of the test, not regressions of your code, so they are never written, and
//!   its search is the same on every run (with a fixed RNG).
//!
//! ```
//! use beethoven_testkit::{arb_scenario, regressions};
//! use proptest::prelude::*;
//! use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
//!
//! // The real properties of the file.
//! proptest! {
//!     #![proptest_config(ProptestConfig {
//!         cases: 16,
//!         failure_persistence: regressions::kept(),
//!         ..ProptestConfig::default()
//!     })]
//!     #[test]
//!     fn a_property(scenario in arb_scenario()) {
//!         prop_assert!(scenario.cluster.nodes >= 4);
//!     }
//! }
//!
//! // A planted bug: found and shrunk, never written to the regressions file.
//! let config = ProptestConfig {
//!     cases: 64,
//!     failure_persistence: regressions::planted(),
//!     ..ProptestConfig::default()
//! };
//! let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
//! let found = TestRunner::new_with_rng(config, rng)
//!     .run(&arb_scenario(), |scenario| {
//!         prop_assert!(scenario.schedule.is_empty(), "a planted bug: any fault trips it");
//!         Ok(())
//!     });
//! assert!(found.is_err());
//! ```

use proptest::test_runner::{FailurePersistence, FileFailurePersistence};

/// Failures kept beside the test file, as `<file>.proptest-regressions`
/// (proptest's usual place for integration tests), without the warning.
pub fn kept() -> Option<Box<dyn FailurePersistence>> {
    Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )))
}

/// No failure kept: for a test that must find a planted bug.
pub fn planted() -> Option<Box<dyn FailurePersistence>> {
    None
}
