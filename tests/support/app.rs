//! The token service in-process on an ephemeral loopback port, with sled in
//! a temp dir and a manual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use enspace_core::ManualClock;
use enspace_tokens::control_plane::{ControlPlane, ControlPlaneConfig};
use enspace_tokens::{AppState, Config};
use serde_json::Value;

/// How long a stop may take: the product's own shutdown, in-flight
/// requests drained.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// The control plane as `enspace serve` assembles it (its sweeps, its
/// request-log indexer, reconciliation with the directory) behind the
/// product's HTTP server, every response checked against the OpenAPI
/// document.
pub struct TestApp {
    pub api: ApiClient,
    pub clock: ManualClock,
    pub state: AppState,
    pub data: tempfile::TempDir,
    control: ControlPlane,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
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

    async fn start(data: tempfile::TempDir, clock: ManualClock, web: Config) -> Self {
        let config = ControlPlaneConfig {
            web,
            ..ControlPlaneConfig::new(data.path(), Arc::new(clock.clone()))
        };
        let control = ControlPlane::start(config)
            .await
            .expect("start the control plane");
        let state = control.state.clone();
        let app = super::conformance::layer(enspace_tokens::router(state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(enspace_http::server::serve(
            listener,
            app,
            enspace_http::server::ServerLimits::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        TestApp {
            api: ApiClient::new(addr),
            clock,
            state,
            data,
            control,
            stop,
            server,
        }
    }

    /// Starts the service with its clock standing at `now`.
    pub async fn spawn_at(now: &str) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(now.parse().expect("RFC 3339 timestamp"));
        Self::spawn_with(data, clock).await
    }

    /// Stops the service as the product stops (the HTTP server drains, then
    /// the control plane shuts down) and hands back its data dir: once this
    /// returns, the sled database can be opened again (by this process or
    /// by `enspace audit`).
    pub async fn stop(self) -> (tempfile::TempDir, ManualClock) {
        let TestApp {
            api,
            clock,
            state,
            data,
            control,
            stop,
            server,
        } = self;
        assert_eq!(
            control.ended_tasks(),
            Vec::<&str>::new(),
            "no background task ends before a stop"
        );
        drop(api);
        let _ = stop.send(());
        let served = tokio::time::timeout(STOP_WITHIN, server)
            .await
            .expect("the server stops within 20 s");
        assert!(
            matches!(served, Ok(Ok(()))),
            "the server stops cleanly: {served:?}"
        );
        drop(state);
        tokio::time::timeout(STOP_WITHIN, control.shutdown())
            .await
            .expect("the control plane shuts down within 20 s")
            .expect("the control plane shuts down cleanly");
        // The writer's thread lets go of the database once its last handle
        // is gone.
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

    /// `POST /v1/introspect` with the internal key and `form`: the answer.
    pub async fn introspect(&self, form: &[(&str, &str)]) -> Value {
        self.client
            .post(self.url("/v1/introspect"))
            .bearer_auth("test-internal-key")
            .form(form)
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json")
    }

    /// Whether token `id`'s request log, as `session` reads it, lists a
    /// call (`None`: not yet), for `until`.
    pub async fn lists_a_call(&self, session: &str, id: impl std::fmt::Display) -> Option<()> {
        let page: Value = self
            .get(session, &format!("/v1/tokens/{id}/requests"))
            .await
            .json()
            .await
            .ok()?;
        (!page["requests"].as_array()?.is_empty()).then_some(())
    }

    /// The process's `/metrics`, as text (asserting it answered 200).
    pub async fn metrics_text(&self) -> String {
        let res = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        let res = conforming(Method::GET, "/metrics", res).await;
        let status = res.status();
        let text = res.text().await.expect("metrics text");
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }

    /// The sum of the samples in `/metrics` whose series (name and labels)
    /// starts with `prefix`; 0 when there is none.
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of the one sample in `/metrics` whose series (name and
    /// labels, as printed) is exactly `series`; 0 when it is absent.
    pub async fn counter(&self, series: &str) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == series).then(|| value.trim().parse::<f64>().ok())?
            })
            .map_or(0, |v| v as u64)
    }

    /// `GET path` as `session`, asserting a 2xx; the JSON body.
    pub async fn get_ok(&self, session: &str, path: &str) -> Value {
        let res = self.get(session, path).await;
        let status = res.status();
        let text = res.text().await.expect("body");
        assert!(status.is_success(), "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    /// The array `member` of the JSON body of `GET path` (asserting a 2xx
    /// and that the member is an array).
    async fn list(&self, session: &str, path: &str, member: &str) -> Vec<Value> {
        let body = self.get_ok(session, path).await;
        body[member]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: `{member}` is an array in {body}"))
            .clone()
    }

    /// `session`'s tokens, as `GET /v1/tokens` lists them.
    pub async fn tokens(&self, session: &str) -> Vec<Value> {
        self.list(session, "/v1/tokens", "tokens").await
    }

    /// `session`'s notifications, as `GET /v1/notifications` lists them.
    pub async fn notifications(&self, session: &str) -> Vec<Value> {
        self.list(session, "/v1/notifications", "notifications")
            .await
    }

    /// Signs in a demo user and returns the session secret.
    /// `GET /v1/event-key`, as served (`alg`, `key`, `key_id`, …).
    pub async fn event_key(&self) -> Value {
        self.client
            .get(self.url("/v1/event-key"))
            .send()
            .await
            .expect("GET /v1/event-key")
            .json()
            .await
            .expect("the event key as JSON")
    }

    pub async fn login(&self, user: &str) -> String {
        let res = self
            .client
            .post(self.url("/v1/session"))
            .json(&serde_json::json!({"username": user, "password": format!("{user}-password")}))
            .send()
            .await
            .expect("login request");
        let res = conforming(Method::POST, "/v1/session", res).await;
        assert_eq!(res.status(), 200, "login as {user}");
        let body: Value = res.json().await.expect("login body");
        body["session"].as_str().expect("session").to_owned()
    }

    pub async fn get(&self, session: &str, path: &str) -> reqwest::Response {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(session)
            .send()
            .await
            .expect("GET");
        conforming(Method::GET, path, res).await
    }

    pub async fn post_json(&self, session: &str, path: &str, body: &Value) -> reqwest::Response {
        let res = self
            .client
            .post(self.url(path))
            .bearer_auth(session)
            .json(body)
            .send()
            .await
            .expect("POST");
        conforming(Method::POST, path, res).await
    }

    pub async fn delete(&self, session: &str, path: &str) -> reqwest::Response {
        let res = self
            .client
            .delete(self.url(path))
            .bearer_auth(session)
            .send()
            .await
            .expect("DELETE");
        conforming(Method::DELETE, path, res).await
    }

    /// Creates a token and returns `(token json, secret)`.
    pub async fn create_token(&self, session: &str, body: &Value) -> (Value, String) {
        let res = self.post_json(session, "/v1/tokens", body).await;
        let status = res.status();
        let body: Value = res.json().await.expect("created body");
        assert_eq!(status, 201, "create token: {body}");
        let secret = body["secret"].as_str().expect("secret").to_owned();
        (body["token"].clone(), secret)
    }
}

/// `res` (the answer to `method path`) after checking it against the
/// committed OpenAPI document, rebuilt for the caller to read; a response
/// that does not conform fails the test here.
async fn conforming(method: Method, path: &str, res: reqwest::Response) -> reqwest::Response {
    let (status, version, headers) = (res.status(), res.version(), res.headers().clone());
    let body = res.bytes().await.expect("response body");
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = path.split('?').next().unwrap_or_default();
    if let Err(violation) = super::conformance::check(&method, route, status, content_type, &body) {
        panic!("conformance violation: {violation}");
    }
    let mut rebuilt = axum::http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    reqwest::Response::from(rebuilt)
}
