//! `enspace serve` in-process (the same code the binary runs) on an
//! ephemeral port, with a manual clock; embedded, or on a given NATS.

use std::sync::Arc;
use std::time::Duration;

use enspace::cli::ServiceArgs;
use enspace_core::ManualClock;
use tokio::sync::oneshot;

use super::app::ApiClient;

pub struct ServeApp {
    pub api: ApiClient,
    pub clock: ManualClock,
    pub data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn service_args(data: &std::path::Path, nats_url: Option<String>) -> ServiceArgs {
    ServiceArgs {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data: data.to_path_buf(),
        nats_url,
        directory: None,
        internal_key: Some("test-internal-key".into()),
        request_retention: Duration::from_secs(90 * 86_400),
        request_max_bytes: Default::default(),
        node_id: "serve".into(),
        nats_auth: Default::default(),
        nats_edge_api: None,
        event_signing_key: None,
        event_key: None,
        max_staleness: enspace::cli::Staleness(Some(Duration::from_secs(60))),
        github_keys: None,
        stream_repair_interval: Duration::from_secs(10),
        limits: Default::default(),
        cluster: Default::default(),
        notifications: enspace::cli::NotificationArgs {
            notification_sweep_interval: Duration::from_millis(50),
            webhook_retry_min: Duration::from_millis(200),
            ..Default::default()
        },
    }
}

impl ServeApp {
    pub async fn spawn(nats_url: Option<String>) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let args = service_args(data.path(), nats_url);
        Self::spawn_with(args, data).await
    }

    pub async fn spawn_with(args: ServiceArgs, data: tempfile::TempDir) -> Self {
        let clock = ManualClock::new(jiff::Timestamp::now());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(enspace::run::serve_with(
            args,
            listener,
            Arc::new(clock.clone()),
            async move {
                let _ = stopped.await;
            },
            super::conformance::layer,
        ));
        let app = ServeApp {
            api: ApiClient::new(addr),
            clock,
            data,
            stop: Some(stop),
            task,
        };
        app.wait_ready().await;
        app
    }

    pub async fn wait_ready(&self) {
        super::eventually(Duration::from_secs(20), "serve /readyz", || async {
            let res = self
                .api
                .client
                .get(self.api.url("/readyz"))
                .send()
                .await
                .ok()?;
            (res.status() == 200).then_some(())
        })
        .await;
    }

    /// Graceful stop; hands back the data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("enspace serve stops within 20 s");
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "enspace serve stops cleanly: {stopped:?}"
        );
        self.data
    }
}

impl std::ops::Deref for ServeApp {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}
