//! Metric labels are bounded on every listener (`serve`, `tokens`,
//! `api-node`): a method outside the standard nine counts as `other`, a path
//! as its matched route's template or `unmatched`. Once each shape of
//! request has been seen, 2,000 more unauthenticated requests with random
//! methods (HTTP tokens of up to 2 KB) and random paths grow `/metrics` by
//! less than 2 KB.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use crate::support::app::ApiClient;
use crate::support::distributed::{self, wait_ready};
use crate::support::{NatsServer, ServeApp};

/// The characters of an HTTP token (RFC 9110 `tchar`).
const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of a path segment that need no encoding.
const PCHAR: &[u8] = b"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random(rng: &mut impl Rng, alphabet: &[u8], max_len: usize) -> String {
    let len = rng.gen_range(1..=max_len);
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// A path of `template` with every `{param}` random, or (for `None`) a
/// path no route has.
fn path_of(rng: &mut impl Rng, template: Option<&str>) -> String {
    match template {
        None => format!("/{}/{}", random(rng, PCHAR, 40), random(rng, PCHAR, 500)),
        Some(t) => t
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    random(rng, PCHAR, 200)
                } else {
                    part.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// Sends one request; any answer will do (none must be a 5xx).
async fn send(api: &ApiClient, method: &str, path: &str) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP token");
    let res = api
        .client
        .request(method, api.url(path))
        .send()
        .await
        .expect("an answer");
    assert!(
        !res.status().is_server_error(),
        "{} for {path}",
        res.status()
    );
}

/// Sees each route shape once with a standard and a non-standard method,
/// then sends 2,000 requests with random methods and paths of those shapes
/// and checks `/metrics` grew by less than 2 KB.
async fn assert_bounded(api: &ApiClient, name: &str, templates: &[&str]) {
    let shapes: Vec<Option<&str>> = std::iter::once(None)
        .chain(templates.iter().copied().map(Some))
        .collect();
    let mut rng = rand::thread_rng();
    for shape in &shapes {
        for method in ["GET", "PROPFIND"] {
            send(api, method, &path_of(&mut rng, *shape)).await;
        }
    }
    api.metrics_text().await;
    let before = api.metrics_text().await;
    let requests: Vec<(String, String)> = (0..2_000)
        .map(|i| {
            let shape = shapes[i % shapes.len()];
            (random(&mut rng, TCHAR, 2_048), path_of(&mut rng, shape))
        })
        .collect();
    futures::stream::iter(&requests)
        .for_each_concurrent(8, |(method, path)| send(api, method, path))
        .await;
    let after = api.metrics_text().await;
    let grown = after.len().saturating_sub(before.len());
    assert!(
        grown < 2_048,
        "{name}: /metrics grew by {grown} bytes ({} to {}) over 2,000 random methods and paths",
        before.len(),
        after.len()
    );
    assert!(after.contains("method=\"other\""), "{name}: {after}");
    assert!(after.contains("route=\"unmatched\""), "{name}");
}

const NODE_ROUTES: [&str; 2] = [
    "/api/v1/workspaces/{ws}/records",
    "/api/v1/workspaces/{ws}/records/{id}",
];
const TOKENS_ROUTES: [&str; 4] = [
    "/v1/tokens/{id}",
    "/v1/tokens/{id}/requests",
    "/settings/{rest}",
    "/assets/{version}/{file}",
];

#[tokio::test]
async fn random_methods_and_paths_add_no_metric_labels_on_serve() {
    let app = ServeApp::spawn(None).await;
    let templates: Vec<&str> = NODE_ROUTES.iter().chain(&TOKENS_ROUTES).copied().collect();
    assert_bounded(&app, "serve", &templates).await;
}

#[tokio::test]
async fn random_methods_and_paths_add_no_metric_labels_on_tokens_or_an_api_node() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = distributed::token_service(data.path(), &nats.url(), &[]);
    let node = distributed::api_node_on(&nats, "node-a");
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&node.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    tokio::time::timeout(Duration::from_secs(300), async {
        assert_bounded(&svc, "tokens", &TOKENS_ROUTES).await;
        assert_bounded(&node, "api-node", &NODE_ROUTES).await;
    })
    .await
    .expect("within 5 minutes");
}
