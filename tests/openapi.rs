//! `infra/openapi.yaml` (what API Management publishes) against the service, so they cannot
//! drift apart:
//! - every path and method the document lists reaches a route of the running service (through
//!   the Functions route prefix, as the host forwards it), not the router's fallback
//!   ("no such route") nor 405;
//! - every HTTP function of `function-*/function.json` (route + methods) is documented, and
//!   every documented operation has a function the host routes to it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::app::TestApp;
use maxconf::sim::{SimConfig, Simulator};
use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options"];

/// A well-formed room name that does not exist: enough to reach each handler.
const SAMPLE_NAME: &str = "openapi-check-room";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (path, method) pairs of the OpenAPI document, paths as APIM publishes them (no `/api`).
fn documented() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("infra/openapi.yaml")).expect("infra/openapi.yaml");
    let doc: Value = serde_norway::from_str(&text).expect("openapi.yaml is YAML");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0")),
        "OpenAPI 3.0.x (APIM imports 3.0)"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        assert!(
            !path.starts_with("/api/"),
            "{path}: document paths without the Functions /api prefix, as APIM publishes them"
        );
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((path.clone(), method.clone()));
            }
        }
    }
    assert!(!out.is_empty(), "openapi.yaml documents no operation");
    out
}

/// (path, method) pairs of the HTTP functions, as `/<route>` (no prefix), and the prefix.
fn functions() -> (String, BTreeMap<(String, String), String>) {
    let host: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("host.json")).expect("host.json"),
    )
    .expect("host.json is JSON");
    let prefix = host["extensions"]["http"]["routePrefix"]
        .as_str()
        .unwrap_or("api")
        .to_owned();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root()).expect("repository root") {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("function-") || !dir.is_dir() {
            continue;
        }
        let function: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("function.json")).expect("function.json"),
        )
        .unwrap_or_else(|e| panic!("{name}/function.json: {e}"));
        for binding in function["bindings"].as_array().expect("bindings") {
            if binding["type"] != "httpTrigger" {
                continue;
            }
            let route = binding["route"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: an HTTP function needs an explicit route"));
            let methods = binding["methods"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: an HTTP function needs explicit methods"));
            for method in methods {
                let method = method.as_str().unwrap().to_ascii_lowercase();
                let key = (format!("/{route}"), method);
                if let Some(other) = out.insert(key.clone(), name.clone()) {
                    panic!("{name} and {other} both claim {key:?}");
                }
            }
        }
    }
    (prefix, out)
}

#[test]
fn every_http_function_is_documented_and_every_operation_has_a_function() {
    let documented = documented();
    let (_, functions) = functions();
    let undocumented: Vec<String> = functions
        .iter()
        .filter(|(key, _)| !documented.contains(key))
        .map(|((path, method), name)| format!("{} {path} ({name})", method.to_uppercase()))
        .collect();
    let unrouted: Vec<String> = documented
        .iter()
        .filter(|key| !functions.contains_key(*key))
        .map(|(path, method)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "HTTP functions missing from infra/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in infra/openapi.yaml that no function.json routes (the host would answer 404): {unrouted:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_reaches_a_route_of_the_service() {
    maxconf::tls::ensure_crypto_provider();
    let sim = Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    // The public routes answer 404 ("no such route") while unconfigured: configure them.
    let sim_url = sim.base_url();
    let app = TestApp::spawn_with(
        &sim_url,
        &[
            ("EVENT_SINK_USERNAME", "openapi-sink"),
            ("EVENT_SINK_PASSWORD", "openapi-sink-password"),
            ("GENESYS_ALLOWED_DIVISIONS", "openapi-division"),
            ("GENESYS_API_BASE", &sim_url),
        ],
    )
    .await;
    let (prefix, _) = functions();

    let mut unrouted = Vec::new();
    for (path, method) in documented() {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') && segment.ends_with('}') {
                    SAMPLE_NAME
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let url = format!("/{prefix}{concrete}");
        let verb = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        // No query and no body: each handler refuses such a request with its own answer
        // (400, 401, 404 "no such room", …), and nothing is created or deleted.
        let response = app
            .request(verb, &url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let fallback = (status == 404 && detail == "no such route") || status == 405;
        if fallback {
            unrouted.push(format!(
                "{} {path} (sent {url}: {status} {detail})",
                method.to_uppercase()
            ));
        }
    }
    assert!(
        unrouted.is_empty(),
        "documented in infra/openapi.yaml but not routed by the service: {unrouted:#?}"
    );
}
