//! Workspace admins (`admin_of` in the directory; the demo makes bob admin
//! of acme): they list every token that can reach their workspace, revoke
//! one with reason `admin`, and set the workspace's token policy, which
//! binds creation and rotation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::distributed::{self, TwoNodes, wait_status};
use crate::support::{TestApp, assert_json, assert_problem};

fn body(expiration: &str, workspaces: &[&str]) -> Value {
    json!({"description": format!("{expiration} on {workspaces:?}"), "expiration": expiration,
           "scopes": ["read"], "workspaces": workspaces})
}

fn id(token: &Value) -> String {
    token["id"].as_str().expect("id").to_owned()
}

async fn put_policy(app: &ApiClient, session: &str, ws: &str, policy: &Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/workspaces/{ws}/policy")))
        .bearer_auth(session)
        .json(policy)
        .send()
        .await
        .expect("PUT")
}

#[tokio::test]
async fn an_admin_sees_every_token_reaching_the_workspace_and_a_member_gets_403() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let me = assert_json(app.get(&bob, "/v1/me").await, 200).await;
    assert_eq!(me["admin_of"], json!(["acme"]));

    let (acme, _) = app
        .create_token(&alice, &body("3m", &["acme", "globex"]))
        .await;
    let (globex, _) = app.create_token(&alice, &body("3m", &["globex"])).await;
    let (own, _) = app.create_token(&bob, &body("never", &["acme"])).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", id(&acme)))
            .await
            .status(),
        204
    );

    let listed = assert_json(app.get(&bob, "/v1/workspaces/acme/tokens").await, 200).await;
    assert_eq!(listed["workspace"], "acme");
    assert_eq!(
        listed["policy"],
        json!({"max_lifetime": null, "require_expiration": false})
    );
    let tokens = listed["tokens"].as_array().expect("tokens");
    let ids: Vec<String> = tokens.iter().map(id).collect();
    assert_eq!(
        ids,
        [id(&own), id(&acme)],
        "newest first; not the globex-only token"
    );
    assert_eq!(tokens[1]["owner"], "alice");
    assert_eq!(tokens[1]["owner_name"], "Alice");
    assert_eq!(tokens[1]["status"], "revoked");
    assert_eq!(tokens[1]["revoked_reason"], "user");
    assert_eq!(tokens[1]["scopes"], json!(["read"]));
    assert_eq!(tokens[1]["compliant"], true);
    assert!(
        tokens
            .iter()
            .all(|t| t.get("secret").is_none() && t.get("secret_hash").is_none())
    );
    assert!(!ids.contains(&id(&globex)));

    assert_problem(
        app.get(&alice, "/v1/workspaces/acme/tokens").await,
        403,
        "not_workspace_admin",
    )
    .await;
    assert_problem(
        app.get(&bob, "/v1/workspaces/initech/tokens").await,
        403,
        "not_workspace_admin",
    )
    .await;
    assert_problem(
        app.get(&bob, "/v1/workspaces/nowhere/tokens").await,
        403,
        "not_workspace_admin",
    )
    .await;
    let anonymous = app
        .client
        .get(app.url("/v1/workspaces/acme/tokens"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn an_admin_revokes_a_token_on_every_api_node_with_reason_admin() {
    // Bound whole: the processes live as long as it does.
    let two = TwoNodes::start().await;
    let (svc, nodes) = (&two.svc, &two.nodes);
    let alice = svc.login("alice").await;
    let bob = svc.login("bob").await;
    let (token, secret) = svc
        .create_token(&alice, &distributed::body("reaches acme"))
        .await;
    let (globex, _) = svc.create_token(&alice, &body("never", &["globex"])).await;
    for node in nodes {
        wait_status(node, &secret, 200, Duration::from_secs(5)).await;
    }

    // A policy event in the stream between does not trouble the nodes.
    let policy = json!({"max_lifetime": "1y", "require_expiration": true});
    assert_eq!(put_policy(svc, &bob, "acme", &policy).await.status(), 200);
    let path = format!("/v1/workspaces/acme/tokens/{}", id(&token));
    assert_problem(svc.delete(&alice, &path).await, 403, "not_workspace_admin").await;
    for node in nodes {
        assert_eq!(
            distributed::status(node, &secret).await,
            200,
            "a member cannot revoke"
        );
    }
    assert_eq!(svc.delete(&bob, &path).await.status(), 204);
    for node in nodes {
        wait_status(node, &secret, 401, Duration::from_secs(1)).await;
    }
    assert_eq!(
        svc.delete(&bob, &path).await.status(),
        204,
        "again: nothing new"
    );

    let seen = assert_json(
        svc.get(&alice, &format!("/v1/tokens/{}", id(&token))).await,
        200,
    )
    .await;
    assert_eq!(seen["status"], "revoked");
    assert_eq!(seen["revoked_reason"], "admin");
    let history = assert_json(
        svc.get(&alice, &format!("/v1/tokens/{}/events", id(&token)))
            .await,
        200,
    )
    .await;
    let events = history["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "one revocation recorded");
    assert_eq!(events[1]["actor"], "bob");
    assert_eq!(events[1]["data"]["reason"], "admin");
    assert_eq!(events[1]["data"]["user_id"], "alice");

    // A token that cannot reach acme is not bob's to revoke through acme.
    let path = format!("/v1/workspaces/acme/tokens/{}", id(&globex));
    assert_problem(svc.delete(&bob, &path).await, 404, "token_not_found").await;
    assert_problem(
        svc.delete(&bob, "/v1/workspaces/acme/tokens/not-a-ulid")
            .await,
        404,
        "token_not_found",
    )
    .await;
    let still = assert_json(
        svc.get(&alice, &format!("/v1/tokens/{}", id(&globex)))
            .await,
        200,
    )
    .await;
    assert_eq!(still["status"], "active");
}

#[tokio::test]
async fn a_three_month_policy_refuses_longer_tokens_and_lists_older_ones_as_non_compliant() {
    let app = TestApp::spawn_at("2026-03-10T12:00:00Z").await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (older, _) = app.create_token(&alice, &body("6m", &["acme"])).await;

    let policy = json!({"max_lifetime": "3m", "require_expiration": true});
    assert_eq!(
        assert_json(put_policy(&app, &bob, "acme", &policy).await, 200).await,
        policy
    );
    let same = assert_json(put_policy(&app, &bob, "acme", &policy).await, 200).await;
    assert_eq!(same, policy);
    assert_eq!(
        assert_json(app.get(&alice, "/v1/workspaces/acme/policy").await, 200).await,
        policy
    );

    let res = app
        .post_json(&alice, "/v1/tokens", &body("6m", &["acme", "globex"]))
        .await;
    let refusal = assert_json(res, 422).await;
    assert_eq!(refusal["code"], "policy_violation");
    assert!(refusal["detail"].as_str().expect("detail").contains("acme"));
    assert_problem(
        app.post_json(&alice, "/v1/tokens", &body("never", &["acme"]))
            .await,
        422,
        "policy_violation",
    )
    .await;
    let (ok, _) = app.create_token(&alice, &body("3m", &["acme"])).await;
    app.create_token(&alice, &body("6m", &["globex"])).await;

    // Rotation obeys it too: the old preset is refused, a shorter one not.
    let rotate = format!("/v1/tokens/{}/rotate", id(&older));
    assert_problem(
        app.post_json(&alice, &rotate, &json!({"overlap": "1h"}))
            .await,
        422,
        "policy_violation",
    )
    .await;
    let rotated = assert_json(
        app.post_json(
            &alice,
            &rotate,
            &json!({"overlap": "1h", "expiration": "1m"}),
        )
        .await,
        201,
    )
    .await;

    // Members read it for the create dialog; the list marks older tokens.
    let workspaces = assert_json(app.get(&alice, "/v1/workspaces").await, 200).await;
    assert_eq!(workspaces["workspaces"][0]["id"], "acme");
    assert_eq!(workspaces["workspaces"][0]["policy"], policy);
    assert_eq!(
        workspaces["workspaces"][1]["policy"]["max_lifetime"],
        Value::Null
    );
    assert_eq!(
        assert_json(app.get(&alice, "/v1/workspaces/acme/policy").await, 200).await,
        policy
    );
    let listed = assert_json(app.get(&bob, "/v1/workspaces/acme/tokens").await, 200).await;
    let compliant = |token: &Value| {
        listed["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["id"] == token["id"])
            .expect("listed")["compliant"]
            .clone()
    };
    assert_eq!(compliant(&older), false);
    assert_eq!(compliant(&ok), true);
    assert_eq!(compliant(&rotated["token"]), true);

    // One event for the two identical PUTs, by bob, about no token; and
    // the policy survives a restart.
    let (data, clock) = app.stop().await;
    let app = TestApp::spawn_with(data, clock).await;
    let audra = app.login("audra").await;
    let audit = assert_json(app.get(&audra, "/v1/audit/events?limit=1000").await, 200).await;
    let sets: Vec<&Value> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "workspace_policy_set")
        .collect();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["actor"], "bob");
    assert_eq!(sets[0]["token_id"], "00000000000000000000000000");
    assert_eq!(
        sets[0]["data"],
        json!({"workspace": "acme", "max_lifetime": "3m", "require_expiration": true})
    );
    let alice = app.login("alice").await;
    assert_problem(
        app.post_json(&alice, "/v1/tokens", &body("6m", &["acme"]))
            .await,
        422,
        "policy_violation",
    )
    .await;
}

#[tokio::test]
async fn policy_routes_refuse_non_admins_and_bad_input_with_problems() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let good = json!({"max_lifetime": "1y", "require_expiration": false});
    assert_problem(
        put_policy(&app, &alice, "acme", &good).await,
        403,
        "not_workspace_admin",
    )
    .await;
    assert_problem(
        put_policy(&app, &bob, "initech", &good).await,
        403,
        "not_workspace_admin",
    )
    .await;
    assert_problem(
        app.get(&alice, "/v1/workspaces/initech/policy").await,
        403,
        "not_a_member",
    )
    .await;
    for bad in [
        json!({"max_lifetime": "never", "require_expiration": false}),
        json!({"max_lifetime": "5y", "require_expiration": false}),
    ] {
        assert_problem(
            put_policy(&app, &bob, "acme", &bad).await,
            422,
            "invalid_max_lifetime",
        )
        .await;
    }
    for bad in [
        json!({"max_lifetime": "1y"}),
        json!({"max_lifetime": 12, "require_expiration": false}),
        json!({"max_lifetime": null, "require_expiration": "yes"}),
        json!({"max_lifetime": null, "require_expiration": false, "review": true}),
        json!(["1y"]),
    ] {
        let res = put_policy(&app, &bob, "acme", &bad).await;
        assert_eq!(res.status(), 422, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let raw = |body: String| {
        app.client
            .put(app.url("/v1/workspaces/acme/policy"))
            .bearer_auth(&bob)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        raw("{\"max_lifetime\":".into())
            .await
            .expect("send")
            .status(),
        400
    );
    assert_eq!(
        raw(format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)))
            .await
            .expect("send")
            .status(),
        413
    );
    let anonymous = app
        .client
        .put(app.url("/v1/workspaces/acme/policy"))
        .json(&good)
        .send()
        .await
        .expect("PUT");
    assert_eq!(anonymous.status(), 401);
    // Nothing of it was recorded: the default policy stands.
    let policy = assert_json(app.get(&alice, "/v1/workspaces/acme/policy").await, 200).await;
    assert_eq!(
        policy,
        json!({"max_lifetime": null, "require_expiration": false})
    );
}
