//! The agent-token check under a flood: Genesys Cloud is played by a real HTTP server that
//! counts its calls and how many run at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use futures::StreamExt;
use maxconf::config::GenesysSettings;
use maxconf::genesys::{Genesys, GenesysError, MAX_CONCURRENT_LOOKUPS};

/// What the fake Genesys saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// `Bearer valid-*` is a user in `div-1`; anything else is refused. Every answer takes 100 ms.
async fn fake_genesys() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let app = Router::new().route(
        "/api/v2/users/me",
        get(move |headers: HeaderMap| {
            let seen = counter.clone();
            async move {
                seen.calls.fetch_add(1, Ordering::SeqCst);
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if token.starts_with("Bearer valid-") {
                    (StatusCode::OK, r#"{"division":{"id":"div-1"}}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, "{}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn checker(base: &str) -> Genesys {
    Genesys::new(&GenesysSettings {
        api_base: base.parse().unwrap(),
        allowed_divisions: vec!["div-1".into()],
    })
    .unwrap()
}

/// 300 distinct bogus tokens from 60 clients at once: Genesys never sees more than the cap at a
/// time; a 401 only ever comes from Genesys' own answer (a token that waited too long gets
/// 503, never 401, even a valid new one); a token already cached as valid is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_bogus_tokens_never_flood_genesys() {
    let (base, seen) = fake_genesys().await;
    let genesys = checker(&base);
    genesys.authorize(Some("valid-cached")).await.unwrap();
    let before_flood = seen.calls.load(Ordering::SeqCst);

    let flood = {
        let genesys = genesys.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..300)
                .map(|i| {
                    let genesys = genesys.clone();
                    async move { genesys.authorize(Some(&format!("bogus-{i}"))).await }
                })
                .buffer_unordered(60)
                .collect::<Vec<_>>()
                .await
        })
    };
    // While the flood runs: the cached token is unaffected, a new valid one is never refused.
    while seen.in_flight.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    genesys.authorize(Some("valid-cached")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    let fresh = genesys.authorize(Some("valid-new")).await;
    assert!(
        matches!(fresh, Ok(()) | Err(GenesysError::Unavailable(_))),
        "{fresh:?}"
    );

    let results = flood.await.unwrap();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(GenesysError::Invalid)))
        .count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(GenesysError::Unavailable(_))))
        .count();
    assert_eq!(refused + busy, 300, "{results:?}");
    let calls = seen.calls.load(Ordering::SeqCst) - before_flood;
    // Every 401 is backed by a Genesys call (plus at most the one for `valid-new`).
    assert!(
        refused == calls || refused + 1 == calls,
        "{refused} 401s, {calls} calls"
    );
    let max = seen.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= MAX_CONCURRENT_LOOKUPS, "{max} Genesys calls at once");
}

/// One bogus token sent 50 times, one after the other: one Genesys call.
#[tokio::test]
async fn a_repeated_bogus_token_costs_one_call() {
    let (base, seen) = fake_genesys().await;
    let genesys = checker(&base);
    for _ in 0..50 {
        assert_eq!(
            genesys.authorize(Some("bogus-again")).await,
            Err(GenesysError::Invalid)
        );
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}
