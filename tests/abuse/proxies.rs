//! `--trusted-proxies`: behind a proxy the client address is the right-most
//! hop of `X-Forwarded-For` / `Forwarded` that is not a trusted proxy; from
//! any other peer those headers are ignored. Checked on every per-address
//! rule: the sign-in limit, the leak-report limit and a request record's
//! `client_ip` (which insights and `new_client_ip` read).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::serve::service_args;
use crate::support::{ServeApp, assert_problem, create_body, eventually};

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
        .expect("client")
}

async fn wrong_sign_in(app: &ServeApp, client: &reqwest::Client, n: usize, xff: &str) -> u16 {
    client
        .post(app.url("/v1/session"))
        .header("x-forwarded-for", xff)
        .json(&json!({"username": format!("nobody-{n}"), "password": "guess"}))
        .send()
        .await
        .expect("POST /v1/session")
        .status()
        .as_u16()
}

/// `enspace serve` trusting the proxy at 127.0.0.1 only.
async fn behind_a_proxy() -> ServeApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.http.trusted_proxies = "127.0.0.1/32".parse().expect("cidr");
    ServeApp::spawn_with(args, data).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_sign_in_limit_counts_the_right_most_untrusted_hop_and_ignores_a_spoofed_one()
 {
    let app = behind_a_proxy().await;
    let proxy = client_from([127, 0, 0, 1]);
    // 30 failures of one client behind the proxy, which appends what it
    // saw to whatever the client sent (here a different forged hop each time).
    for n in 0..30 {
        let xff = format!("10.9.9.{n}, 203.0.113.7");
        assert_eq!(wrong_sign_in(&app, &proxy, n, &xff).await, 401);
    }
    let res = proxy
        .post(app.url("/v1/session"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"username": "bob", "password": "bob-password"}))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 429, "too_many_attempts").await;
    // Another client behind the same proxy is not that client, also when
    // the proxy says so with `Forwarded`.
    let res = proxy
        .post(app.url("/v1/session"))
        .header("forwarded", "for=\"[2001:db8::8]:4711\";proto=https")
        .json(&json!({"username": "bob", "password": "bob-password"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    assert_eq!(wrong_sign_in(&app, &proxy, 99, "203.0.113.8").await, 401);

    // A peer that is no trusted proxy is itself the client, whatever it
    // claims: 30 failures under 30 spoofed addresses still count as its own.
    let direct = client_from([127, 0, 0, 2]);
    for n in 0..30 {
        let xff = format!("198.51.100.{n}");
        assert_eq!(wrong_sign_in(&app, &direct, n, &xff).await, 401);
    }
    assert_eq!(
        wrong_sign_in(&app, &direct, 31, "198.51.100.200").await,
        429
    );
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_leak_reports_and_request_records_take_the_client_address_from_it() {
    let app = behind_a_proxy().await;
    let proxy = client_from([127, 0, 0, 1]);
    let direct = client_from([127, 0, 0, 2]);
    let report = |client: &reqwest::Client, xff: &'static str| {
        client
            .post(app.url("/v1/tokens/report-leak"))
            .header("x-forwarded-for", xff)
            .json(&json!({"token": "garbage"}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(
            report(&proxy, "203.0.113.7").await.expect("POST").status(),
            202
        );
    }
    assert_eq!(
        report(&proxy, "203.0.113.7").await.expect("POST").status(),
        429
    );
    assert_eq!(
        report(&proxy, "203.0.113.8").await.expect("POST").status(),
        202
    );

    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &create_body("behind a proxy"))
        .await;
    for (client, xff) in [
        (&proxy, "198.51.100.1, 203.0.113.50"),
        (&direct, "203.0.113.51"),
    ] {
        let res = client
            .get(app.url("/api/v1/workspaces/acme/records"))
            .bearer_auth(&secret)
            .header("x-forwarded-for", xff)
            .send()
            .await
            .expect("API call");
        assert_eq!(res.status(), 200);
    }
    // The window ends now, exclusive: the calls are a second in the past.
    app.clock.advance(jiff::SignedDuration::from_secs(1));
    let id = token["id"].as_str().expect("id");
    let ips = eventually(Duration::from_secs(20), "both calls indexed", || async {
        let res = app.get(&alice, &format!("/v1/tokens/{id}/requests")).await;
        let body: Value = res.json().await.ok()?;
        let mut ips: Vec<String> = body["requests"]
            .as_array()?
            .iter()
            .filter_map(|r| r["client_ip"].as_str().map(str::to_owned))
            .collect();
        ips.sort();
        (ips.len() == 2).then_some(ips)
    })
    .await;
    assert_eq!(ips, ["127.0.0.2", "203.0.113.50"]);
    app.stop().await;
}
