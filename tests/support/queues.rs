//! One test per behaviour and per way requests are queued: `enspace serve`
//! with its embedded queue (the default) and on JetStream.

/// For each `behaviour` (an `async fn(&ServeApp)` in the calling module),
/// a module named for it with two tests, `<behaviour>::embedded` and
/// `<behaviour>::jetstream`.
macro_rules! on_both_queues {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            use crate::support::{NatsServer, ServeApp};

            #[tokio::test]
            async fn embedded() {
                let app = ServeApp::spawn(None).await;
                super::$behaviour(&app).await;
            }

            #[tokio::test]
            async fn jetstream() {
                let nats = NatsServer::start();
                let app = ServeApp::spawn(Some(nats.url())).await;
                super::$behaviour(&app).await;
            }
        }
    )*};
}

pub(crate) use on_both_queues;
