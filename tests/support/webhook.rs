//! A webhook receiver on loopback: what `enspace serve` posts to
//! `--webhook-url`, kept as JSON bodies in arrival order.

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The webhook secret the tests configure (Standard Webhooks' format).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Receiver {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Starts answering `POST /hook` with 200 on an ephemeral port.
    pub async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = bodies.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                        sink.lock().expect("lock").push(value);
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            bodies,
        }
    }

    /// Makes `args` post notifications here, signed with [`SECRET`].
    pub fn configure(&self, args: &mut enspace::cli::ServiceArgs) {
        args.notifications.webhook_url = Some(self.url.parse().expect("url"));
        args.notifications.webhook_secret = Some(SECRET.parse().expect("secret"));
    }

    /// Every body posted of webhook type `kind`, in arrival order.
    pub fn all(&self, kind: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| b["type"] == kind)
            .cloned()
            .collect()
    }

    /// The first body posted of webhook type `kind` (`notification.…`).
    pub fn first(&self, kind: &str) -> Option<Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .find(|b| b["type"] == kind)
            .cloned()
    }
}
