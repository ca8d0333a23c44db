//! A battery of hostile requests against every route: each gets a 4xx (problem+json where the
//! service answers; hyper itself refuses oversized headers), never a 5xx, and the service keeps
//! serving afterwards.

mod common;

use std::time::Duration;

use common::app::TestApp;
use maxconf::sim::{SimConfig, SimServer, Simulator};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default()).await.unwrap()
}

async fn app(sim: &SimServer) -> TestApp {
    TestApp::spawn_with(
        &sim.base_url(),
        &[
            ("EVENT_SINK_USERNAME", "pexip"),
            ("EVENT_SINK_PASSWORD", "sink-pass"),
            ("POOL_EMPTY_FALLBACK", "reject"),
        ],
    )
    .await
}

/// Sends raw bytes (for paths a client library would normalise) and returns the status line.
async fn raw(app: &TestApp, request: &str) -> u16 {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn expect_4xx(app: &TestApp, method: Method, path: &str, body: Option<Vec<u8>>) {
    let mut request = app.request(method.clone(), path);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert!((400..500).contains(&status), "{method} {path}: {status}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{method} {path}");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
}

#[tokio::test]
async fn hostile_paths_queries_and_methods() {
    let sim = sim().await;
    let app = app(&sim).await;
    let huge = "a".repeat(60_000);
    let paths = [
        format!("/api/room/create?uuiData={huge}"),
        "/api/room/create?uuiData=6964&uuiData=6964".to_owned(),
        "/api/room/create?uuiData=%00%00".to_owned(),
        "/api/room/create?uuiData=%C0%AF%FF".to_owned(),
        "/api/room/create?uuiData=69642e2e2f2e2e2f;encoding=hex".to_owned(),
        "/api/room/create?uuiData=😀".to_owned(),
        "/api/room/create?uuiData[]=1".to_owned(),
    ];
    for path in &paths {
        expect_4xx(&app, Method::POST, path, None).await;
    }
    for name in [
        "..%2F..%2Fadmin",
        "%2e%2e",
        "a%00b",
        "%C0%AF",
        "%F0%9F%98%80",
        "a;b",
        "a%20b",
        huge.as_str(),
    ] {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            expect_4xx(
                &app,
                method.clone(),
                &format!("/api/room/{name}"),
                Some(b"{}".to_vec()),
            )
            .await;
        }
    }
    for (method, path) in [
        (Method::PUT, "/api/room/create"),
        (Method::OPTIONS, "/api/room/x"),
        (Method::PUT, "/api/rooms"),
        (Method::GET, "/api/rooms/bulk"),
        (Method::GET, "/api/public/event_sink"),
        (Method::POST, "/api/health"),
        (Method::DELETE, "/api/pool"),
        (Method::GET, "/api/room"),
        (Method::GET, "/api/../etc/passwd"),
        (Method::GET, "/api/rooms?constrained_attributes=maybe"),
        (
            Method::GET,
            "/api/rooms?constrained_attributes=true&constrained_attributes=false",
        ),
        (Method::DELETE, "/api/rooms?confirm=yes"),
        (Method::DELETE, "/api/rooms"),
    ] {
        expect_4xx(&app, method, path, None).await;
    }
    // Paths a client would normalise away, sent raw.
    for request in [
        "GET /api/room/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /api/room/a/../b HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /api/room/%2F HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET //api//room//x HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let status = raw(&app, request).await;
        assert!((400..500).contains(&status), "{request:?}: {status}");
    }
    assert_eq!(
        sim.sim.stats().count("DELETE"),
        0,
        "no hostile request reached a delete"
    );
    assert_eq!(sim.sim.stats().count("PATCH"), 0);
}

#[tokio::test]
async fn hostile_bodies() {
    let sim = sim().await;
    let app = app(&sim).await;
    sim.sim.insert_room(json!({"name": "room1"})).unwrap();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let big = vec![b' '; 2 * 1024 * 1024];
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        nested.clone().into_bytes(),
        br#"{"tag": 5}"#.to_vec(),
        br#"{"name": "other"}"#.to_vec(),
        br#"{"pin": "12"}"#.to_vec(),
        br#"{"pin": "1234", "pin": "5678x"}"#.to_vec(),
        format!(r#"{{"tag": "{}"}}"#, "x".repeat(300)).into_bytes(),
        big.clone(),
        vec![0xff, 0xfe, 0x00],
    ];
    for body in &bodies {
        expect_4xx(&app, Method::PATCH, "/api/room/room1", Some(body.clone())).await;
    }
    for body in [
        b"{}".to_vec(),
        br#"{"count": 0}"#.to_vec(),
        br#"{"count": 501}"#.to_vec(),
        br#"{"count": -1}"#.to_vec(),
        br#"{"count": "5"}"#.to_vec(),
        br#"{"count": 1e308}"#.to_vec(),
        nested.clone().into_bytes(),
        big.clone(),
    ] {
        expect_4xx(&app, Method::POST, "/api/rooms/bulk", Some(body)).await;
    }
    // The event sink refuses oversized bodies even with the right credentials.
    let response = app
        .request(Method::POST, "/api/public/event_sink")
        .basic_auth("pexip", Some("sink-pass"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        sim.sim.room_by_name("room1").unwrap()["tag"],
        "",
        "nothing modified"
    );
    assert_eq!(
        app.pool.approximate_count().await.unwrap(),
        0,
        "no bulk rooms queued"
    );
}

#[tokio::test]
async fn oversized_and_odd_headers() {
    let sim = sim().await;
    let app = app(&sim).await;
    let huge = "a".repeat(1024 * 1024);
    let status = app
        .request(Method::DELETE, "/api/room/room1")
        .header("x-filler", huge.as_str())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(431);
    assert!((400..500).contains(&status), "{status}");
    let many = (0..200).fold(app.request(Method::GET, "/api/rooms"), |r, i| {
        r.header(format!("x-h{i}"), "v")
    });
    let status = many
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(431);
    assert!(status == 200 || (400..500).contains(&status), "{status}");
    // Still serving.
    let health = app
        .http
        .get(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
