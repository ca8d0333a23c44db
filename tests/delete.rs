//! `DELETE /api/room/{room_name}` driven as the Functions host forwards it.

mod common;

use common::app::{TestApp, problem};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::json;

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

#[tokio::test]
async fn deletes_by_name_with_204() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let id = sim
        .sim
        .insert_room(
            json!({"name": "MTIzNDU2LDc2NTQzMg", "aliases": [{"alias": "MTIzNDU2LDc2NTQzMg"}]}),
        )
        .unwrap();
    let response = app.delete_room("MTIzNDU2LDc2NTQzMg").await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert!(sim.sim.room_by_name("MTIzNDU2LDc2NTQzMg").is_none());
    let log = sim.sim.request_log();
    let paths: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path_and_query.as_str()))
        .collect();
    let object = format!("/api/admin/configuration/v1/conference/{id}/");
    assert_eq!(
        paths,
        [
            (
                "GET",
                "/api/admin/configuration/v1/conference/?name=MTIzNDU2LDc2NTQzMg"
            ),
            ("DELETE", object.as_str()),
        ]
    );
}

#[tokio::test]
async fn unknown_room_is_404() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let body = problem(app.delete_room("no-such-room").await, 404).await;
    assert_eq!(body["detail"], "room no-such-room does not exist");
    assert_eq!(sim.sim.stats().count("DELETE"), 0);
}

#[tokio::test]
async fn persistent_rooms_are_403_and_untouched() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    for name in ["test_lobby", "vkiosk_7"] {
        sim.sim.insert_room(json!({"name": name})).unwrap();
        let body = problem(app.delete_room(name).await, 403).await;
        assert!(body["detail"].as_str().unwrap().contains("persistent"));
        assert!(sim.sim.room_by_name(name).is_some());
    }
    assert_eq!(sim.sim.stats().requests, 0, "refused before any Pexip call");
}

#[tokio::test]
async fn invalid_names_are_400_before_any_call() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let long = "a".repeat(251);
    for name in [
        "a%20b",
        "a%2Fb",
        "..%2F..%2Fadmin",
        "%C3%A4",
        "a%3Fx",
        "%ZZ",
        long.as_str(),
    ] {
        let body = problem(app.delete_room(name).await, 400).await;
        assert_eq!(body["type"], "urn:maxconf:problem:room-name", "{name}");
    }
    assert_eq!(sim.sim.stats().requests, 0);
}

#[tokio::test]
async fn a_room_named_create_is_deleted_not_confused_with_the_create_route() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    problem(app.delete_room("create").await, 404).await;
    sim.sim.insert_room(json!({"name": "create"})).unwrap();
    assert_eq!(app.delete_room("create").await.status(), 204);
}

#[tokio::test]
async fn pexip_down_is_503_and_never_a_collection_delete() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    sim.sim.insert_room(json!({"name": "room1"})).unwrap();
    sim.sim.set_down(true);
    let response = app.delete_room("room1").await;
    assert_eq!(response.headers()["retry-after"], "5");
    problem(response, 503).await;
    sim.sim.set_down(false);
    assert!(sim.sim.room_by_name("room1").is_some());
    assert_eq!(sim.sim.stats().collection_deletes, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    problem(
        app.request(reqwest::Method::GET, "/api/nope")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        app.request(reqwest::Method::PUT, "/api/room/create")
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    // GET reads a room named "create" (none here), not the create route.
    problem(
        app.request(reqwest::Method::GET, "/api/room/create")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // The host's start-up probe gets an answer.
    let probe = reqwest::get(format!("{}/", app.base)).await.unwrap();
    assert!(probe.status().is_success());
}

#[tokio::test]
async fn names_reach_pexip_only_as_encoded_query_values() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    // `+` and `=` are legal in names; in a query they must be encoded or they change meaning.
    sim.sim.insert_room(json!({"name": "a+b=c"})).unwrap();
    sim.sim.insert_room(json!({"name": "a b=c"})).unwrap();
    assert_eq!(app.delete_room("a+b=c").await.status(), 204);
    assert!(sim.sim.room_by_name("a+b=c").is_none());
    assert!(
        sim.sim.room_by_name("a b=c").is_some(),
        "the other room is untouched"
    );
    let lookup = &sim.sim.request_log()[0].path_and_query;
    assert_eq!(
        lookup,
        "/api/admin/configuration/v1/conference/?name=a%2Bb%3Dc"
    );
}
