//! No secret reaches the logs: the service runs as a process at debug level, is driven through
//! creates, deletes and every kind of auth failure with known secret values, and its whole
//! output is searched for them.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::app::{SPEC_UUI, test_env};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use maxconf::sim::{SimAuth, SimConfig, Simulator};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");
const PEXIP_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjlz8epwBTei4uK3T
XdG/bW5cWhrd8v9AuOyMnBcBZ0ahRANCAAShh54imYu0t7Xyg+WHquB3h/dppQIg
mxIBVzSdiMjjKlERWdsxVOswWB7XES1QyIB9JYiN5db4pV2pfpy6wgQa
-----END PRIVATE KEY-----";
const PEXIP_PASSWORD: &str = "pexip-pw-Zq81LkS0";
const SINK_PASSWORD: &str = "sink-pw-Hh72Jx19";
const GENESYS_TOKEN: &str = "genesys-token-Pp03Vb88";
const FUNCTION_KEY: &str = "function-key-Mm45Tt21";
const TENANT: &str = "7a1b2c3d-0000-4000-8000-00000000abcd";
const ENTRA_KEY: &str = include_str!("fixtures/entra-test-key-1.pem");

/// A failing test must not leave the service running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn debug_logs_carry_no_secret() {
    maxconf::tls::ensure_crypto_provider();
    let sim = Simulator::spawn(SimConfig {
        auth: SimAuth::OAuth {
            client_id: "maxconf-client".into(),
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.sim.insert_room(json!({"name": "test_kiosk"})).unwrap();
    // Entra (keys that do not match the token) and Genesys (refusing every token).
    let outside = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "jwks_uri": format!("{}/keys", outside.uri())})))
        .mount(&outside)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": []})))
        .mount(&outside)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/me"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&outside)
        .await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = test_env(&sim.base_url());
    env.remove("PEXIP_USERNAME");
    env.remove("PEXIP_PASSWORD");
    for (k, v) in [
        ("PEXIP_OAUTH_CLIENT_ID", "maxconf-client".to_owned()),
        ("PEXIP_OAUTH_PRIVATE_KEY", STANDARD.encode(PEXIP_KEY)),
        ("PEXIP_USERNAME", "admin".to_owned()),
        ("PEXIP_PASSWORD", PEXIP_PASSWORD.to_owned()),
        ("EVENT_SINK_USERNAME", "pexip".to_owned()),
        ("EVENT_SINK_PASSWORD", SINK_PASSWORD.to_owned()),
        ("GENESYS_API_BASE", outside.uri()),
        ("GENESYS_ALLOWED_DIVISIONS", "div-1".to_owned()),
        ("AUTH_MODE", "entra".to_owned()),
        ("AUTH_TENANT_ID", TENANT.to_owned()),
        ("AUTH_AUDIENCE", "api://maxconf".to_owned()),
        ("AUTH_ALLOW_ANY_PRINCIPAL", "true".to_owned()),
        (
            "AUTH_OPENID_CONFIG_URL",
            format!(
                "{}/{TENANT}/v2.0/.well-known/openid-configuration",
                outside.uri()
            ),
        ),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
        ("RUST_LOG", "debug".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ] {
        env.insert(k.into(), v);
    }
    let log_path = std::env::temp_dir().join(format!("maxconf-leaks-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .env_clear()
            .envs(&env)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/")).send().await.is_err() {
        assert!(Instant::now() < deadline, "service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let bearer = jsonwebtoken::encode(
        &header,
        &json!({"iss": "x", "aud": "api://maxconf", "exp": now + 600, "roles": ["Rooms.Manage"]}),
        &EncodingKey::from_rsa_pem(ENTRA_KEY.as_bytes()).unwrap(),
    )
    .unwrap();

    let send = |req: reqwest::RequestBuilder| async move {
        req.header("x-functions-key", FUNCTION_KEY)
            .header(
                "X-Azure-Functions-InvocationId",
                "5d1c0b3a-0000-4000-8000-000000000001",
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let auth = format!("Bearer {bearer}");
    let cases = [
        send(
            http.post(format!("{base}/api/room/create?uuiData={SPEC_UUI}"))
                .header("authorization", &auth),
        )
        .await,
        send(
            http.post(format!("{base}/api/room/create?uuiData=zz"))
                .header("authorization", &auth),
        )
        .await,
        send(
            http.delete(format!("{base}/api/room/test_kiosk"))
                .header("authorization", &auth),
        )
        .await,
        send(http.delete(format!("{base}/api/room/x"))).await,
        send(
            http.get(format!("{base}/api/public/room/r1"))
                .header("x-auth-token", GENESYS_TOKEN),
        )
        .await,
        send(
            http.post(format!("{base}/api/public/event_sink"))
                .basic_auth("pexip", Some("wrong-password"))
                .json(&json!({"event": "conference_ended", "data": {"name": "r1"}})),
        )
        .await,
        send(
            http.post(format!("{base}/api/public/event_sink"))
                .basic_auth("pexip", Some(SINK_PASSWORD))
                .json(&json!({"event": "conference_ended", "data": {"name": "r1"}})),
        )
        .await,
        send(http.get(format!("{base}/api/health"))).await,
        send(
            http.post(format!("{base}/function-pool-maintain"))
                .json(&json!({"Data": {}, "Metadata": {}})),
        )
        .await,
    ];
    let _ = child.0.kill();
    let _ = child.0.wait();
    // The invalid token, the Genesys refusal and the wrong sink password were each refused.
    assert_eq!(cases[0], 401, "{cases:?}");
    assert_eq!(cases[3], 401, "{cases:?}");
    assert_eq!(cases[4], 401, "{cases:?}");
    assert_eq!(cases[5], 401, "{cases:?}");
    assert_eq!(cases[6], 200, "{cases:?}");

    let output = std::fs::read_to_string(&log_path).unwrap();
    if std::env::var_os("KEEP_LEAK_LOG").is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "debug logging was on"
    );
    assert!(
        output.contains("pexip request") || output.contains("pexip token request"),
        "upstream calls logged"
    );
    let pem_body: Vec<&str> = PEXIP_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let basic_sink = STANDARD.encode(format!("pexip:{SINK_PASSWORD}"));
    let secrets = [
        PEXIP_PASSWORD,
        SINK_PASSWORD,
        GENESYS_TOKEN,
        FUNCTION_KEY,
        bearer.as_str(),
        &bearer[bearer.len() - 40..],
        basic_sink.as_str(),
        maxconf::pool::connection::DEV_ACCOUNT_KEY,
        pem_body[0],
        pem_body[1],
    ];
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "secret {secret:?} leaked into the logs"
        );
    }
    // The storage SDK logs request URLs at debug; the SAS signature must be redacted there.
    for (i, _) in output.match_indices("sig=") {
        assert!(
            output[i + 4..].starts_with("REDACTED"),
            "a SAS signature leaked: {}",
            &output[i..(i + 20).min(output.len())]
        );
    }
}
