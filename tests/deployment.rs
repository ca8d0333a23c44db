//! What the deployment relies on, checked against the real binary: the day-one smoke script
//! passes against `maxconf dev` (skipping, and saying so, what needs Azure), and every KQL query
//! of the alerts, the workbook and the README reads fields and values the binary really prints
//! (no Kusto engine needed for names and types).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::app::{SPEC_UUI, test_env};
use common::process::{Killed, free_port, wait_until_up};
use maxconf::sim::{SimConfig, Simulator};
use regex::Regex;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[tokio::test]
async fn smoke_script_passes_against_maxconf_dev_and_names_what_it_skipped() {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["dev", "--port", &port.to_string(), "--rooms", "2"])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/smoke.sh"))
            .args(["--dev", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "ok    health: 200 alive",
        "ok    delete: 204",
        "ok    missing uuiData: 400 urn:maxconf:problem:",
        "SKIP  missing token gives 401: needs Azure",
        "SKIP  staging runs no timers (TIMERS_ENABLED): needs Azure",
        "smoke: passed",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("ok    create: 200, room "), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

/// A query and where it came from.
struct Query {
    source: String,
    text: String,
}

fn queries() -> Vec<Query> {
    let dir = Path::new(ROOT).join("infra/monitoring");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kql"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "alert and workbook queries: {files:?}");
    let mut out: Vec<Query> = files
        .iter()
        .map(|p| Query {
            source: p.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(p).unwrap(),
        })
        .collect();
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let block = Regex::new(r"(?s)```kusto\n(.*?)```").unwrap();
    let before = out.len();
    for (i, m) in block.captures_iter(&readme).enumerate() {
        out.push(Query {
            source: format!("README.md kusto block {}", i + 1),
            text: m[1].to_owned(),
        });
    }
    assert!(
        out.len() > before,
        "the README shows its KQL in ```kusto blocks"
    );
    out
}

/// The value at a dotted path of a JSON object.
fn at<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(event, |v, key| v.get(key))
}

/// Function folders (function.json next to host.json): the `name` of the host's `requests`.
fn function_names() -> BTreeSet<String> {
    std::fs::read_dir(ROOT)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("function.json").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

async fn invoke(http: &reqwest::Client, port: u16, function: &str) -> Value {
    let response = http
        .post(format!("http://127.0.0.1:{port}/{function}"))
        .json(&json!({"Data": {"timer": {}}, "Metadata": {"sys": {"MethodName": function}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{function}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn kql_reads_only_fields_and_values_the_binary_prints() {
    // The binary as the host runs it in Azure (LOG_FORMAT=json, the deployment's default), made
    // to print every kind of line the queries read: a create, a rejected and a failed create,
    // and a metrics run.
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .envs(test_env(&sim.base_url()))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("PEXIP_TIMEOUT_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    let mut stdout = guard.0.stdout.take().unwrap();
    let http = reqwest::Client::new();
    let create = |uui: Option<&str>| {
        let url = match uui {
            Some(uui) => format!("http://127.0.0.1:{port}/api/room/create?uuiData={uui}"),
            None => format!("http://127.0.0.1:{port}/api/room/create"),
        };
        http.post(url).header("x-functions-key", "k").send()
    };
    assert_eq!(create(Some(SPEC_UUI)).await.unwrap().status(), 200);
    assert_eq!(create(None).await.unwrap().status(), 400);
    let metrics = invoke(&http, port, "function-metrics").await;
    sim.sim.set_down(true);
    assert_eq!(create(Some(SPEC_UUI)).await.unwrap().status(), 503);
    sim.sim.set_down(false);
    let _ = guard.0.kill();
    let _ = guard.0.wait();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        metrics["Logs"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .starts_with("metric maxconf_pool_available=")),
        "{metrics}"
    );

    // The 5xx alert counts "request failed" lines of the create route by status and problem.
    assert!(
        lines.iter().any(|e| e["message"] == "request failed"
            && e["span"]["path"] == "/api/room/create"
            && e["status"] == 503
            && e["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("urn:maxconf:problem:"))),
        "a failed create line with path, status and problem:\n{printed}"
    );

    let cast = Regex::new(r"\b(tostring|toint|tolong|todouble)\(e\.([A-Za-z_.]+)\)").unwrap();
    let equals = Regex::new(r#"tostring\(e\.([A-Za-z_.]+)\)\s*==\s*"([^"]+)""#).unwrap();
    let within = Regex::new(r#"tostring\(e\.([A-Za-z_.]+)\)\s+in\s*\(([^)]*)\)"#).unwrap();
    let literal = Regex::new(r#""([^"]+)""#).unwrap();
    let bare = Regex::new(r"\be\.[A-Za-z_]").unwrap();
    let request_name = Regex::new(r#"\bname\s*(?:==\s*"([^"]+)"|in\s*\(([^)]*)\))"#).unwrap();
    let traces_table = Regex::new(r"(?m)(^|=\s*)traces\b").unwrap();
    let requests_table = Regex::new(r"(?m)(^|=\s*)requests\b").unwrap();
    let functions = function_names();
    let mut checked = 0;
    for query in queries() {
        let source = &query.source;
        let code: String = query
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let reads_traces = traces_table.is_match(&code);
        let reads_requests = requests_table.is_match(&code);
        assert!(
            reads_traces ^ reads_requests,
            "{source}: reads exactly one of traces / requests"
        );
        let table = if reads_traces { "traces" } else { "requests" };
        assert!(
            query.text.contains(&format!("Table: {table}")),
            "{source}: says which table it reads (Table: {table})"
        );
        if reads_traces {
            assert!(
                code.contains("parse_json(message)"),
                "{source}: reads the JSON line"
            );
            // Every field is read through a cast, so its type is part of the contract.
            let casts = cast.captures_iter(&code).count();
            assert_eq!(
                bare.find_iter(&code).count(),
                casts,
                "{source}: every e.<field> is read through tostring/toint/tolong/todouble"
            );
            for c in cast.captures_iter(&code) {
                let (function, path) = (&c[1], &c[2]);
                let typed = |v: &Value| match function {
                    "tostring" => v.is_string(),
                    "toint" | "tolong" => v.is_i64() || v.is_u64(),
                    _ => v.is_number(),
                };
                assert!(
                    lines.iter().any(|e| at(e, path).is_some_and(typed)),
                    "{source}: no printed line has e.{path} of the type {function} expects"
                );
                checked += 1;
            }
            let mut expected: Vec<(String, String)> = equals
                .captures_iter(&code)
                .map(|c| (c[1].to_owned(), c[2].to_owned()))
                .collect();
            for c in within.captures_iter(&code) {
                for l in literal.captures_iter(&c[2]) {
                    expected.push((c[1].to_owned(), l[1].to_owned()));
                }
            }
            for (path, value) in expected {
                assert!(
                    lines
                        .iter()
                        .any(|e| at(e, &path).and_then(Value::as_str) == Some(value.as_str())),
                    "{source}: no printed line has e.{path} == {value:?}"
                );
                checked += 1;
            }
        } else {
            let names: Vec<String> = request_name
                .captures_iter(&code)
                .flat_map(|c| match (c.get(1), c.get(2)) {
                    (Some(one), _) => vec![one.as_str().to_owned()],
                    (_, Some(list)) => literal
                        .captures_iter(list.as_str())
                        .map(|l| l[1].to_owned())
                        .collect(),
                    _ => vec![],
                })
                .collect();
            assert!(
                !names.is_empty(),
                "{source}: filters requests by function name"
            );
            for name in names {
                assert!(
                    functions.contains(&name),
                    "{source}: {name} is no function folder ({functions:?})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked} checks");
}

/// TIMERS_ENABLED covers every timer: the handler's list is exactly the function folders with a
/// `timerTrigger`, so a new timer cannot run on the staging slot unnoticed.
#[test]
fn every_timer_function_is_covered_by_timers_enabled() {
    let timers: BTreeSet<String> = function_names()
        .into_iter()
        .filter(|name| {
            std::fs::read_to_string(Path::new(ROOT).join(name).join("function.json"))
                .unwrap()
                .contains("\"timerTrigger\"")
        })
        .collect();
    let handled: BTreeSet<String> = maxconf::routes::invoke::TIMER_FUNCTIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(timers, handled);
}
