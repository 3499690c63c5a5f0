//! The shared runtime suite (`tests/suite`) on tokio: a multi-threaded runtime per test.

mod rt {
    use std::future::Future;
    use std::time::Duration;

    pub(crate) use beethoven_tokio::{Handle, start};

    pub(crate) fn block_on(test: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the test")
            .block_on(test);
    }

    pub(crate) async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    pub(crate) async fn timeout<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(limit, work).await.ok()
    }
}

mod suite;
