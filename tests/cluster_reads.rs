//! The read barrier of a control-plane process that is not the writer
//! (it asks the token events stream how far it is, and waits for its log to
//! get there) runs only for callers it knows.

use std::time::{Duration, Instant};

use crate::support::NatsServer;
use crate::support::assert_problem;
use crate::support::cluster::{other, pair, writer};
use crate::support::distributed::metric;

const BARRIERS: &str = "enspace_read_barriers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_read_on_a_follower_costs_no_jetstream_call_and_no_wait() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let leader = writer(&[&a, &b]).await;
    let follower = other([&a, &b], &leader);
    let session = follower.api.login("alice").await;
    assert_eq!(follower.api.get(&session, "/v1/tokens").await.status(), 200);
    let before = metric(&follower.api, BARRIERS).await;

    // With NATS gone, the barrier cannot be passed: whoever waits at it
    // waits its two seconds and is told 503.
    nats.stop();
    let http = &follower.api.client;
    let url = follower.api.url("/v1/tokens");
    let strangers = [
        http.get(&url),
        http.get(&url).bearer_auth("ens_sess_not-a-session"),
        http.get(&url)
            .header("cookie", "enspace_session=ens_sess_forged"),
        http.delete(follower.api.url("/v1/tokens/01J0000000000000000000000")),
        http.get(follower.api.url("/v1/audit/events")),
        http.post(follower.api.url("/v1/introspect"))
            .bearer_auth("wrong-internal-key")
            .form(&[("token", "ens_pat_x")]),
    ];
    for stranger in strangers {
        let asked = Instant::now();
        let res = stranger
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            res.status(),
            401,
            "an unauthenticated read is refused, not held"
        );
        eprintln!("401 after {:?}", asked.elapsed());
    }
    assert!(
        before >= 1.0,
        "the follower's authenticated read asked the stream"
    );
    assert_eq!(
        metric(&follower.api, BARRIERS).await,
        before,
        "no unauthenticated request asked the stream"
    );
    // A known caller still waits at the barrier, which cannot be passed.
    let res = follower.api.get(&session, "/v1/tokens").await;
    assert_problem(res, 503, "replica_behind").await;
    assert_eq!(metric(&follower.api, BARRIERS).await, before + 1.0);
}
