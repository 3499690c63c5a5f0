//! What the shared [`Handle`](crate::Handle) needs from an async runtime.

use std::fmt;

/// Work for a thread where blocking is fine.
pub type BlockingWork = Box<dyn FnOnce() + Send>;

/// The one service the driver asks of an async runtime: somewhere to run work that
/// blocks (a subscriber's callbacks, DNS lookups), away from the node's thread.
///
/// `beethoven-tokio` implements it with tokio's blocking pool, `beethoven-smol`
/// with smol's; a runtime of your own needs only this, a UDP socket and a timer.
/// Channels need nothing more: the driver's are runtime-agnostic.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Runs `work` to its end on a thread where it may block; does not wait for it.
    fn spawn_blocking(&self, work: BlockingWork);
}

/// A runtime for unit tests: a plain thread per piece of work.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Threads;

#[cfg(test)]
impl Runtime for Threads {
    fn spawn_blocking(&self, work: BlockingWork) {
        std::thread::spawn(work);
    }
}
