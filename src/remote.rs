//! Remote mode: `maxconf <command> --api <url>` runs the operator command on a deployed service
//! through its management routes (`crate::routes::manage`) instead of on this machine's
//! settings. The service answers with the same report structures, printed by the same code,
//! so output and exit status are those of a local run.
//!
//! The token, in this order:
//! 1. `MAXCONF_API_TOKEN` (automation and tests: a token obtained some other way);
//! 2. none when the URL's host is loopback (`maxconf dev`, which runs with auth off);
//! 3. the operator's own login: `azure_identity`'s developer-tools credential (the Azure CLI,
//!    then the Azure Developer CLI) for the scope `<MAXCONF_API_AUDIENCE>/.default`.
//!
//! Through API Management, `MAXCONF_API_SUBSCRIPTION_KEY` is sent as the subscription key.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::operations::{Operation, State};
use crate::ops::Console;
use crate::secret::Secret;

/// Requests answer in seconds (status probes have short timeouts; everything long is an
/// operation); this bounds a stuck network path.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an operation is polled.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// An operation not found (yet) for this long is given up: its record did not reach storage.
const NOT_FOUND_GRACE: Duration = Duration::from_secs(30);
/// The longest an operation is followed; it keeps running on the service after that.
const FOLLOW_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// Where the remote commands go and how they authenticate (from flags and the environment).
pub struct Target {
    pub api: String,
    pub audience: Option<String>,
}

pub struct Remote {
    base: Url,
    http: reqwest::Client,
    token: Option<Secret>,
    subscription_key: Option<Secret>,
}

/// A remote command that could not run: its message, exit status (2: usage or settings,
/// 1: the service or the network) and the HTTP status that said so, if any.
pub struct Failed {
    message: String,
    exit: u8,
    status: Option<StatusCode>,
}

impl Failed {
    fn new(message: String, exit: u8) -> Self {
        Self {
            message,
            exit,
            status: None,
        }
    }

    fn exit(self) -> ExitCode {
        eprintln!("maxconf: {}", self.message);
        ExitCode::from(self.exit)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True for `localhost` and loopback addresses.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Remote {
    /// Checks the URL and gets a token as the module documentation says.
    pub async fn connect(target: &Target) -> Result<Self, Failed> {
        let base = Url::parse(target.api.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                Failed::new(
                    format!(
                        "--api / MAXCONF_API must be an http(s) URL, e.g. https://<apim>/maxconf or http://127.0.0.1:7071/api (got `{}`)",
                        target.api
                    ),
                    2,
                )
            })?;
        if base.scheme() == "http" && !is_loopback(&base) {
            return Err(Failed::new(
                "--api must use https unless it is a loopback address (tokens are never sent in clear)".into(),
                2,
            ));
        }
        let token = match env("MAXCONF_API_TOKEN") {
            Some(token) => Some(Secret::new(token)),
            None if is_loopback(&base) => None,
            None => Some(operator_token(target.audience.as_deref()).await?),
        };
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Failed::new(format!("HTTP client: {e}"), 1))?;
        Ok(Self {
            base,
            http,
            token,
            subscription_key: env("MAXCONF_API_SUBSCRIPTION_KEY").map(Secret::new),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}/{path}",
            self.base.path().trim_end_matches('/')
        ));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One request; a non-2xx answer becomes a [`Failed`] naming the status and the
    /// problem's `detail`.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, Failed> {
        let url = self.url(path, query);
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(key) = &self.subscription_key {
            request = request.header("Ocp-Apim-Subscription-Key", key.expose());
        }
        // The URL carries no credential, so it may be named.
        let origin = crate::doctor::origin(&url);
        let response = request
            .send()
            .await
            .map_err(|e| Failed::new(format!("{origin} did not answer: {e}"), 1))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let detail = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "no problem details".to_owned());
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                "; the service requires a token: use its https URL with MAXCONF_API_AUDIENCE (az login first), or set MAXCONF_API_TOKEN"
            }
            StatusCode::FORBIDDEN => {
                "; management routes need the operator app role (AUTH_OPERATOR_ROLE) assigned to you"
            }
            _ => "",
        };
        Err(Failed {
            message: format!("{method} {} answered {status}: {detail}{hint}", url.path()),
            exit: 1,
            status: Some(status),
        })
    }

    /// `maxconf status --api …`.
    pub async fn status(&self, json: bool, min_ready: Option<u64>) -> Result<bool, Failed> {
        let query: Vec<(&str, String)> = min_ready
            .map(|n| ("min_ready", n.to_string()))
            .into_iter()
            .collect();
        let response = self.request(Method::GET, "manage/status", &query).await?;
        let status: crate::status::Status = response
            .json()
            .await
            .map_err(|e| Failed::new(format!("the status report is unreadable: {e}"), 1))?;
        Ok(crate::status::print(&status, json))
    }

    /// Starts an operation (`POST manage/<path>`), follows it and prints what it prints.
    pub async fn operation(&self, path: &str, query: &[(&str, String)]) -> Result<bool, Failed> {
        let started: Operation = self
            .request(Method::POST, &format!("manage/{path}"), query)
            .await?
            .json()
            .await
            .map_err(|e| Failed::new(format!("the operation is unreadable: {e}"), 1))?;
        let console = Console::default();
        let mut printed = 0;
        let mut op = started;
        let began = Instant::now();
        let mut missing_since: Option<Instant> = None;
        loop {
            for entry in op.entries.iter().skip(printed) {
                entry.replay(&console);
            }
            printed = printed.max(op.entries.len());
            if op.state != State::Running {
                console.finish();
                return Ok(op.state == State::Succeeded);
            }
            if began.elapsed() > FOLLOW_AT_MOST {
                console.finish();
                return Err(Failed::new(
                    format!(
                        "operation {} ({}) still runs after {} minutes; follow it with GET manage/operations/{}",
                        op.id,
                        op.command,
                        FOLLOW_AT_MOST.as_secs() / 60,
                        op.id
                    ),
                    1,
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
            let path = format!("manage/operations/{}", op.id);
            match self.request(Method::GET, &path, &[]).await {
                Ok(response) => {
                    missing_since = None;
                    let next: Operation = response
                        .json()
                        .await
                        .map_err(|e| Failed::new(format!("the operation is unreadable: {e}"), 1))?;
                    // Another instance may answer from storage with fewer lines than this
                    // one printed; never print a line twice.
                    op = next;
                }
                // Another instance, and the record is being replaced: ask again.
                Err(e) if e.status == Some(StatusCode::NOT_FOUND) => {
                    let since = *missing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > NOT_FOUND_GRACE {
                        console.finish();
                        return Err(e);
                    }
                }
                Err(e) => {
                    console.finish();
                    return Err(e);
                }
            }
        }
    }
}

/// The operator's token for `<audience>/.default` from their developer-tools login.
async fn operator_token(audience: Option<&str>) -> Result<Secret, Failed> {
    use azure_core::credentials::TokenCredential;
    let audience = audience.ok_or_else(|| {
        Failed::new(
            "set MAXCONF_API_AUDIENCE (or --audience) to the API's application ID URI, AUTH_AUDIENCE of the service (e.g. api://<app id>)".into(),
            2,
        )
    })?;
    let scope = format!("{}/.default", audience.trim_end_matches('/'));
    let credential = azure_identity::DeveloperToolsCredential::new(None)
        .map_err(|e| Failed::new(format!("developer-tools credential: {e}"), 1))?;
    let token = credential.get_token(&[&scope], None).await.map_err(|e| {
        Failed::new(
            format!("could not get a token for {scope} from the Azure CLI (run `az login`; the tenant may need to consent): {e}"),
            1,
        )
    })?;
    Ok(Secret::new(token.token.secret()))
}

/// Runs a remote command and turns its outcome into the exit status of a local run.
pub async fn run<F, Fut>(target: &Target, command: F) -> ExitCode
where
    F: FnOnce(Remote) -> Fut,
    Fut: std::future::Future<Output = Result<bool, Failed>>,
{
    let remote = match Remote::connect(target).await {
        Ok(remote) => remote,
        Err(failed) => return failed.exit(),
    };
    match command(remote).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(failed) => failed.exit(),
    }
}
