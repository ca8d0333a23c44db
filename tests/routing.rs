//! Routing and correlation as the host forwards requests: which paths are routes, trailing
//! slashes, and the `instance` every problem carries.

mod common;

use common::app::{TestApp, problem};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use reqwest::Method;

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

#[tokio::test]
async fn one_segment_paths_are_not_found_unless_they_name_a_timer() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    for (method, path) in [
        (Method::GET, "/favicon.ico"),
        (Method::GET, "/api"),
        (Method::GET, "/robots.txt"),
        (Method::POST, "/favicon.ico"),
        (Method::POST, "/function-nope"),
        (Method::DELETE, "/api"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert!(response.headers().get("allow").is_none(), "{method} {path}");
        let body = problem(response, 404).await;
        assert_eq!(body["detail"], "no such route", "{method} {path}");
    }
    // The three timer functions are routes for POST only.
    let response = app
        .request(Method::GET, "/function-metrics")
        .send()
        .await
        .unwrap();
    problem(response, 405).await;
    let response = app
        .request(Method::POST, "/function-metrics")
        .body(r#"{"Data":{},"Metadata":{}}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_trailing_slash_names_the_same_route() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    for path in ["/api/pool/", "/api/rooms/", "/api/health/", "/api/pool//"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = app
        .request(Method::GET, "/api/room/nope/")
        .send()
        .await
        .unwrap();
    let body = problem(response, 404).await;
    assert_eq!(body["detail"], "room nope does not exist");
}

#[tokio::test]
async fn every_problem_carries_the_request_id_as_its_instance() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    // `TestApp::request` sends the host's invocation id, a GUID: it is the instance.
    let body = problem(
        app.request(Method::GET, "/favicon.ico")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(
        body["instance"],
        "urn:uuid:8f0c6f2e-1d3a-4c55-9d2b-6f1f3b1c2a90"
    );

    // Not a GUID, or no header at all: a fresh id per request.
    let mut seen = Vec::new();
    for id in [Some("not-a-guid"), Some("12345"), None] {
        let mut request = app
            .http
            .get(format!("{}/api/room/nope", app.base))
            .header("x-functions-key", "k");
        if let Some(id) = id {
            request = request.header("X-Azure-Functions-InvocationId", id);
        }
        let body = problem(request.send().await.unwrap(), 404).await;
        let instance = body["instance"].as_str().unwrap().to_owned();
        let guid = instance.strip_prefix("urn:uuid:").expect("a urn:uuid");
        assert!(maxconf::routes::is_guid(guid), "{instance}");
        assert!(!instance.contains("not-a-guid"));
        seen.push(instance);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each request has its own id: {seen:?}");

    // 503s too.
    sim.sim.set_down(true);
    let response = app.create(common::app::SPEC_UUI).await;
    let body = problem(response, 503).await;
    assert_eq!(
        body["instance"],
        "urn:uuid:8f0c6f2e-1d3a-4c55-9d2b-6f1f3b1c2a90"
    );
}
