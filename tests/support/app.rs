//! The token service in-process on an ephemeral loopback port, with sled in
//! a temp dir and a manual clock.

use std::net::SocketAddr;
use std::sync::Arc;

use enspace_core::ManualClock;
use enspace_tokens::directory::Directory;
use enspace_tokens::metrics::Metrics;
use enspace_tokens::request_log::RequestIndex;
use enspace_tokens::store::Store;
use enspace_tokens::{AppState, Config};
use prometheus_client::registry::Registry;
use serde_json::Value;

pub struct TestApp {
    pub api: ApiClient,
    pub clock: ManualClock,
    pub state: AppState,
    pub data: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(jiff::Timestamp::now());
        Self::spawn_with(data, clock).await
    }

    /// Starts the service on an existing data dir (e.g. after a restart).
    pub async fn spawn_with(data: tempfile::TempDir, clock: ManualClock) -> Self {
        Self::start(data, clock, Self::config()).await
    }

    /// The configuration every `TestApp` has unless a test changes it.
    pub fn config() -> Config {
        Config {
            internal_key: Some("test-internal-key".into()),
            ..Config::default()
        }
    }

    /// Starts the service with `config` (start from [`TestApp::config`]).
    pub async fn spawn_configured(config: Config) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(jiff::Timestamp::now());
        Self::start(data, clock, config).await
    }

    async fn start(data: tempfile::TempDir, clock: ManualClock, config: Config) -> Self {
        let store = Store::open(data.path()).expect("open store");
        let requests = RequestIndex::open_in(data.path()).expect("open request index");
        let state = AppState::new(
            store,
            requests,
            Directory::demo(),
            Arc::new(clock.clone()),
            Metrics::new(Registry::default()),
            config,
        )
        .expect("state");
        let app = super::conformance::layer(enspace_tokens::router(state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        TestApp {
            api: ApiClient::new(addr),
            clock,
            state,
            data,
            server,
        }
    }

    /// Starts the service with its clock standing at `now`.
    pub async fn spawn_at(now: &str) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(now.parse().expect("RFC 3339 timestamp"));
        Self::spawn_with(data, clock).await
    }

    /// Stops the server and hands back its data dir, flushed and closed: once
    /// this returns, the sled database can be opened again (by this process
    /// or by `enspace audit`).
    pub async fn stop(self) -> (tempfile::TempDir, ManualClock) {
        let TestApp {
            api,
            clock,
            state,
            data,
            server,
            ..
        } = self;
        server.abort();
        let _ = server.await;
        state.store.db.flush().expect("flush");
        // Open connections (and through them the router's state, the writer
        // and the database) go away once the client is gone.
        drop(api);
        drop(state);
        drop(super::open_db(data.path()).await);
        drop(super::open_requests_db(data.path()).await);
        (data, clock)
    }
}

impl std::ops::Deref for TestApp {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// HTTP calls to an ENSPACE process (in-process or child) at `base`.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl ApiClient {
    pub fn new(addr: SocketAddr) -> Self {
        ApiClient {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
        }
    }

    pub fn from_base(base: &str) -> Self {
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("base is http://ip:port");
        Self::new(addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process's `/metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Signs in a demo user and returns the session secret.
    pub async fn login(&self, user: &str) -> String {
        let res = self
            .client
            .post(self.url("/v1/session"))
            .json(&serde_json::json!({"username": user, "password": format!("{user}-password")}))
            .send()
            .await
            .expect("login request");
        assert_eq!(res.status(), 200, "login as {user}");
        let body: Value = res.json().await.expect("login body");
        body["session"].as_str().expect("session").to_owned()
    }

    pub async fn get(&self, session: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(session)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post_json(&self, session: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(session)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn delete(&self, session: &str, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(session)
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates a token and returns `(token json, secret)`.
    pub async fn create_token(&self, session: &str, body: &Value) -> (Value, String) {
        let res = self.post_json(session, "/v1/tokens", body).await;
        assert_eq!(res.status(), 201, "create token");
        let body: Value = res.json().await.expect("created body");
        let secret = body["secret"].as_str().expect("secret").to_owned();
        (body["token"].clone(), secret)
    }
}
