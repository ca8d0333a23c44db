//! A fake Entra ID tenant: wiremock serving the OpenID configuration and signing keys, and
//! tokens signed with throwaway keys (tests/fixtures/entra-test-key-*.pem).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TENANT: &str = "7a1b2c3d-0000-4000-8000-00000000abcd";
pub const AUDIENCE: &str = "api://maxconf";
pub const ROLE: &str = "Rooms.Manage";
pub const KEY_1: &str = include_str!("../fixtures/entra-test-key-1.pem");
pub const KEY_2: &str = include_str!("../fixtures/entra-test-key-2.pem");
pub const N_1: &str = "3mwlgViCObd4r7H1ZovVaCvAExU0gPsMNwshYN7u4apElFv9gbrF1G8s9WDDz4DPdVS6spebD5lSFRZoYMvF7p-dgFX_5rrnCZGkq10PbKn7kfX66ga65vuVOKnA2XoNaBf1d4nh-_4VwojAEzRVjEryAidSal_MUO5eHNR63I88zuSGlhx1B31fU_CmD23G5i_YGTanoKcv1lYjU3gOQJFzlCpBo7xK15hhDRF9p4wmOR3IaMPCaeA7kA3fA7GD51N3XpWtsJBKwOIZR3qXOrIWTVHz-SrKaS46PCmqE_PXpyxB3813vlf8G7Q4upmvaEohnfajWYaEPJM8SmzQ7w";
pub const N_2: &str = "ozK__P899mzYiceTZSLooKf3VjL5GFFDTePf-Qzby8T4TlkF5_UO-fFZM236A-ZZQG4s-64htknAii7dcaG5-AREHaRclV-hK7cI_Hmr4tIWWF6ezQI1nMaKtk8OOr7BZe_vq_bAwh81I5G0CgsYjIR49ubrAbYibAss8p45vpKlFKqEMK5cWnkkFsoRIjASHYolskauX25sJDu5WjDKkCfn58YVTI-GpFj-awNIwq4rG6AVsBBKxrT0TGc7rcdWjsUX_ueA-4E65U3UyreRcuEVVXeKylFHE_vY3S64MnsKtOa9J8VrjXJmTALvZwunuhX8u_BpfH50EMzzYZjADQ";

pub fn v2_issuer() -> String {
    format!("https://login.microsoftonline.com/{TENANT}/v2.0")
}

pub fn jwk(kid: &str, n: &str) -> Value {
    json!({"kty": "RSA", "use": "sig", "kid": kid, "n": n, "e": "AQAB"})
}

/// A mock tenant publishing `keys`.
pub async fn tenant(keys: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "jwks_uri": format!("{}/{TENANT}/discovery/v2.0/keys", server.uri()),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{TENANT}/discovery/v2.0/keys")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": keys})))
        .mount(&server)
        .await;
    server
}

pub fn config_url(server: &MockServer) -> String {
    format!(
        "{}/{TENANT}/v2.0/.well-known/openid-configuration",
        server.uri()
    )
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn claims() -> Value {
    json!({"iss": v2_issuer(), "aud": AUDIENCE, "iat": now(), "nbf": now() - 10,
           "exp": now() + 3600, "roles": [ROLE], "azp": "idim-video-api"})
}

pub fn sign(kid: &str, key: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The operator app role (`AUTH_OPERATOR_ROLE`) of the tests.
pub const OPERATOR_ROLE: &str = "Pool.Operate";

/// A token of the fake tenant for the test audience carrying `roles`.
pub fn token_with_roles(roles: &[&str]) -> String {
    let mut c = claims();
    c["roles"] = json!(roles);
    sign("k1", KEY_1, &c)
}

/// `AUTH_*` settings for a service that trusts the fake tenant `server`.
pub fn entra_env(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_MODE", "entra".to_owned()),
        ("AUTH_TENANT_ID", TENANT.to_owned()),
        ("AUTH_AUDIENCE", AUDIENCE.to_owned()),
        ("AUTH_REQUIRED_ROLE", ROLE.to_owned()),
        ("AUTH_OPERATOR_ROLE", OPERATOR_ROLE.to_owned()),
        ("AUTH_OPENID_CONFIG_URL", config_url(server)),
    ]
}
