//! `maxconf doctor`, and the reachability checks `status` and the other commands share: every
//! setting checked at once, then storage, Pexip, Entra and Genesys probed, each within a few
//! seconds, naming the endpoint that failed and the likely fix.

use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::config::{AuthMode, ConfigError, SERVING_ONLY_PREFIXES, Settings};
use crate::pexip::{PexipClient, PexipError, RetryPolicy};
use crate::pool::Queue;

/// Each probe gives up after this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One probed dependency.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Probe {
    /// Owned when read back from a remote status report.
    pub name: std::borrow::Cow<'static, str>,
    /// Scheme, host and port only (never a path, query or credential).
    pub endpoint: String,
    pub ok: bool,
    /// What was seen, and on failure the likely fix.
    pub detail: String,
}

impl Probe {
    fn new(name: &'static str, url: &Url, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        Self {
            name: name.into(),
            endpoint: origin(url),
            ok,
            detail,
        }
    }

    pub fn line(&self) -> String {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        format!("{mark} {:<8} {}: {}", self.name, self.endpoint, self.detail)
    }
}

/// `scheme://host:port` of a URL.
pub fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

/// A TCP connection to the queue endpoint, within `timeout`: fails in seconds, naming the
/// host, where the storage SDK would retry for longer without saying where.
pub async fn storage_reachable(settings: &Settings, timeout: Duration) -> Result<(), String> {
    let url = settings.pool.connection.endpoint();
    let fix = format!(
        "check {} (the storage connection) and the network path to it",
        settings.pool.connection_name
    );
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(format!("storage endpoint {url} has no host; {fix}"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "storage at {} is unreachable ({e}); {fix}",
            origin(url)
        )),
        Err(_) => Err(format!(
            "storage at {} did not answer within {}s; {fix}",
            origin(url),
            timeout.as_secs()
        )),
    }
}

/// Storage: reachable, and the pool queue readable with these credentials.
pub async fn probe_storage(settings: &Settings, timeout: Duration) -> Probe {
    let url = settings.pool.connection.endpoint().clone();
    let result = async {
        storage_reachable(settings, timeout).await?;
        let queue = Queue::azure(
            &settings.pool.connection,
            &settings.pool.queue_name,
            timeout,
        )
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, queue.approximate_count()).await {
            Ok(Ok(n)) => Ok(format!(
                "queue {} holds {n} messages",
                settings.pool.queue_name
            )),
            Ok(Err(e)) => Err(format!(
                "{e}; check the account key or the identity's role (Storage Queue Data \
                 Contributor), and that the queue exists (the service creates it at start)"
            )),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        }
    }
    .await;
    Probe::new("storage", &url, result)
}

/// Pexip: one small conference list, no retry.
pub async fn probe_pexip(settings: &Settings, timeout: Duration) -> Probe {
    let url = settings.pexip.base_url.clone();
    let result = async {
        let mut pexip = settings.pexip.clone();
        pexip.timeout = timeout;
        let client = PexipClient::with_retry(
            &pexip,
            RetryPolicy {
                attempts: 1,
                ..RetryPolicy::default()
            },
        )
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout * 2, client.probe()).await {
            Ok(Ok(())) => Ok("the conference list answers".to_owned()),
            Ok(Err(e)) => Err(pexip_failure(&e)),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        }
    }
    .await;
    Probe::new("pexip", &url, result)
}

/// A Pexip failure as an operator reads it, with the likely fix.
pub fn pexip_failure(e: &PexipError) -> String {
    match e {
        // The list itself is not there: the URL is not a Management Node's.
        PexipError::NotFound => "the conference list answered 404: PEXIP_BASE_URL should be \
             the Management Node's address (https://<node>, no path)"
            .to_owned(),
        PexipError::Auth(_) => {
            format!("{e}; check PEXIP_USERNAME/PEXIP_PASSWORD (or the OAuth client and its key)")
        }
        PexipError::Unavailable(_) => {
            format!("{e}; check PEXIP_BASE_URL and the network path (VNet, firewall)")
        }
        _ => e.to_string(),
    }
}

/// Entra ID: the OpenID configuration the token check reads its keys from.
pub async fn probe_entra(settings: &Settings, timeout: Duration) -> Option<Probe> {
    let AuthMode::Entra {
        tenant_id,
        openid_config_url,
        ..
    } = &settings.auth
    else {
        return None;
    };
    let url = match openid_config_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!(
            "https://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration"
        ))
        .ok()?,
    };
    let result = async {
        let response = http(timeout)?
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unreachable(&e, "AUTH_OPENID_CONFIG_URL (or AUTH_TENANT_ID)"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "the OpenID configuration answered {status}; check AUTH_TENANT_ID"
            ));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| "the OpenID configuration is not JSON".to_owned())?;
        match body["jwks_uri"].as_str() {
            Some(_) => Ok("the OpenID configuration names its signing keys".to_owned()),
            None => Err("the OpenID configuration has no jwks_uri".to_owned()),
        }
    }
    .await;
    Some(Probe::new("entra", &url, result))
}

/// Genesys Cloud, when the public lookup is on: any HTTP answer (a 401 without a token) shows
/// it is reachable.
pub async fn probe_genesys(settings: &Settings, timeout: Duration) -> Option<Probe> {
    if settings.genesys.allowed_divisions.is_empty() {
        return None;
    }
    let url = settings.genesys.api_base.join("/api/v2/users/me").ok()?;
    let result = async {
        let response = http(timeout)?
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unreachable(&e, "GENESYS_API_BASE"))?;
        Ok(format!(
            "answers ({} without a token, as expected)",
            response.status()
        ))
    }
    .await;
    Some(Probe::new("genesys", &settings.genesys.api_base, result))
}

fn http(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| "could not build an HTTP client".to_owned())
}

fn unreachable(e: &reqwest::Error, setting: &str) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{what}; check {setting} and the outbound network path")
}

/// Whether a bad setting only matters to the HTTP service.
fn serving_only(e: &ConfigError) -> bool {
    SERVING_ONLY_PREFIXES
        .iter()
        .any(|p| e.setting.starts_with(p))
}

/// `maxconf doctor`: prints its findings; exit status 0 when all is well, 2 when a setting is
/// bad, 1 when a dependency cannot be reached.
pub async fn run(lookup: impl Fn(&str) -> Option<String>) -> u8 {
    let all = Settings::from_lookup_all(&lookup);
    let errors = all.as_ref().err().cloned().unwrap_or_default();
    if errors.is_empty() {
        println!("settings: ok");
    } else {
        println!("settings: {} problems", errors.len());
        for e in &errors {
            let note = if serving_only(e) {
                " (the service only)"
            } else {
                ""
            };
            println!("  {e}{note}");
        }
    }
    // Probe with what can be read: the bad settings at their defaults (or set aside, for the
    // serving ones).
    let masked = |name: &str| {
        if errors.iter().any(|e| e.setting == name) {
            None
        } else {
            lookup(name)
        }
    };
    let settings = match all {
        Ok(settings) => settings,
        Err(_) => match Settings::from_lookup(masked)
            .ok()
            .or_else(|| Settings::for_commands(masked).ok())
        {
            Some(settings) => settings,
            None => {
                println!("probes skipped: a required setting above is missing or wrong");
                return 2;
            }
        },
    };
    let (storage, pexip, entra, genesys) = tokio::join!(
        probe_storage(&settings, PROBE_TIMEOUT),
        probe_pexip(&settings, PROBE_TIMEOUT),
        probe_entra(&settings, PROBE_TIMEOUT),
        probe_genesys(&settings, PROBE_TIMEOUT),
    );
    let mut probes = vec![storage, pexip];
    probes.extend(entra);
    probes.extend(genesys);
    for probe in &probes {
        println!("{}", probe.line());
    }
    if matches!(settings.auth, AuthMode::None) {
        println!("skip entra    AUTH_MODE is not `entra`");
    }
    if settings.genesys.allowed_divisions.is_empty() {
        println!("skip genesys  GENESYS_ALLOWED_DIVISIONS is empty (public lookup off)");
    }
    if !errors.is_empty() {
        2
    } else if probes.iter().any(|p| !p.ok) {
        1
    } else {
        0
    }
}
