//! Finding a headless Chromium for the browser tests of the status page
//! (`agent/tests/status_page.rs`) and the simulator's report
//! (`testkit/tests/report_browser.rs`): each includes this file with
//! `#[path]`, so both look in the same places.

use std::path::PathBuf;

/// The names tried on `PATH`, in order.
pub(crate) const BROWSERS: [&str; 3] = ["chromium-headless-shell", "chromium", "chromium-browser"];

/// `$STATUS_PAGE_BROWSER`, or the first of [`BROWSERS`] on `PATH`.
pub(crate) fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATUS_PAGE_BROWSER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    BROWSERS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
