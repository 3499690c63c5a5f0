//! The shared runtime suite on smol: the very file `beethoven-tokio` runs, included
//! by path, so both runtimes pass the same tests.

mod rt {
    use std::future::Future;
    use std::time::Duration;

    pub(crate) use beethoven_smol::{Handle, start};
    use smol::{Timer, future};

    pub(crate) fn block_on(test: impl Future<Output = ()>) {
        smol::block_on(test);
    }

    pub(crate) async fn sleep(duration: Duration) {
        Timer::after(duration).await;
    }

    pub(crate) async fn timeout<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
        let expired = async {
            Timer::after(limit).await;
            None
        };
        future::or(async { Some(work.await) }, expired).await
    }
}

#[path = "../../runtime-tokio/tests/suite/mod.rs"]
mod suite;
