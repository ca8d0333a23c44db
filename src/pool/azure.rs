//! Azure Storage Queue backend on the official `azure_storage_queue` crate.
//!
//! Error messages are built here from the status code, the service's error code and the
//! operation, never from `azure_core` errors: those can quote request URLs, and with an account
//! SAS the URL carries `sig=`.

use super::connection::StorageConnection;
use super::queue::{
    MAX_BATCH, MAX_VISIBILITY, QueueError, Received, is_valid_queue_name, whole_seconds,
};
use super::sas::account_sas;
use crate::secret::Secret;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{
    AsyncRawResponse, ClientOptions, ExponentialRetryOptions, HttpClient, Request, RetryOptions,
    StatusCode, Transport, Url,
};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders as _, QueueClientPeekMessagesOptions,
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use time::OffsetDateTime;

/// Installs rustls' ring provider as the process default (reqwest is built without one).
/// Idempotent; call before building any reqwest client.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How long a signed SAS is valid, and when it is replaced. Signing is cheap and local, so a
/// short-lived token is re-signed at half its life: a long-running process never sends an
/// expired one, and a token that leaks (proxy logs, …) is useless within a day.
const SAS_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const SAS_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Start the validity window a little in the past to tolerate clock skew with the service.
const SAS_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

#[derive(Clone)]
pub struct AzureQueue {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    /// The queue URL without credentials, for messages and Debug.
    display_url: String,
    http: Arc<dyn HttpClient>,
    auth: Auth,
    clients: Mutex<Arc<Clients>>,
}

enum Auth {
    Sas {
        account: String,
        account_key: Secret,
        queue_url: Url,
    },
    Identity,
}

struct Clients {
    /// For sends only, with no retries: a send that timed out may still have stored the
    /// message, so a blind automatic retry could enqueue a room twice.
    send: QueueClient,
    /// Everything else, with a short exponential retry.
    other: QueueClient,
    /// When the SAS in these clients' URLs was signed (None: no SAS, never renewed).
    signed_at: Option<std::time::Instant>,
}

impl fmt::Debug for AzureQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureQueue")
            .field("url", &self.inner.display_url)
            .finish_non_exhaustive()
    }
}

impl AzureQueue {
    pub fn new(
        conn: &StorageConnection,
        queue_name: &str,
        request_timeout: Duration,
    ) -> Result<Self, QueueError> {
        ensure_crypto_provider();
        if !is_valid_queue_name(queue_name) {
            return Err(QueueError::Config(format!(
                "invalid queue name {queue_name:?}: 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
            )));
        }
        let http: Arc<dyn HttpClient> = Arc::new(RedactingClient::new(request_timeout)?);
        let mut queue_url = conn.endpoint().clone();
        queue_url
            .path_segments_mut()
            .map_err(|_| QueueError::Config("queue endpoint cannot be a base URL".into()))?
            .pop_if_empty()
            .push(queue_name);
        let display_url = queue_url.to_string();

        let (auth, clients) = match conn {
            StorageConnection::Sas {
                account,
                account_key,
                ..
            } => {
                let auth = Auth::Sas {
                    account: account.clone(),
                    account_key: account_key.clone(),
                    queue_url,
                };
                let clients = build_sas_clients(&auth, &http)?;
                (auth, clients)
            }
            StorageConnection::ManagedIdentity { client_id, .. } => {
                let credential: Arc<dyn TokenCredential> =
                    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                        user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                        client_options: client_options(&http, retry_options()),
                    }))
                    .map_err(|e| {
                        QueueError::Config(format!(
                            "managed identity credential unavailable ({})",
                            kind_name(e.kind())
                        ))
                    })?;
                let build = |retry: RetryOptions| {
                    QueueClient::new(
                        queue_url.clone(),
                        Some(credential.clone()),
                        Some(QueueClientOptions {
                            client_options: client_options(&http, retry),
                            ..Default::default()
                        }),
                    )
                    .map_err(|_| {
                        QueueError::Config(format!(
                            "cannot build a queue client for {display_url} (a managed identity needs https)"
                        ))
                    })
                };
                let clients = Clients {
                    send: build(RetryOptions::none())?,
                    other: build(retry_options())?,
                    signed_at: None,
                };
                (Auth::Identity, clients)
            }
        };

        Ok(Self {
            inner: Arc::new(Inner {
                name: queue_name.to_owned(),
                display_url,
                http,
                auth,
                clients: Mutex::new(Arc::new(clients)),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current clients, re-signing the SAS when it is past half its life.
    fn clients(&self) -> Result<Arc<Clients>, QueueError> {
        let mut current = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        let stale = current
            .signed_at
            .is_some_and(|at| at.elapsed() >= SAS_RENEW_AFTER);
        if stale {
            *current = Arc::new(build_sas_clients(&self.inner.auth, &self.inner.http)?);
        }
        Ok(current.clone())
    }

    fn fail(&self, op: &'static str, target: Target, e: azure_core::Error) -> QueueError {
        map_error(op, &self.inner.name, target, &e)
    }

    pub async fn create_if_missing(&self) -> Result<(), QueueError> {
        let clients = self.clients()?;
        match clients.other.create(None).await {
            Ok(_) => Ok(()),
            // Exists with different metadata: it exists, which is all we ask.
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.fail("create queue", Target::Queue, e)),
        }
    }

    pub async fn send(&self, text: &str, initial_invisibility: Duration) -> Result<(), QueueError> {
        if initial_invisibility >= MAX_VISIBILITY {
            return Err(QueueError::Other(
                "send: initial invisibility must be under 7 days".into(),
            ));
        }
        let clients = self.clients()?;
        let body = QueueMessage {
            message_text: Some(text.to_owned()),
        }
        .try_into()
        .map_err(|_| QueueError::Other("send: cannot encode the message".into()))?;
        let options = QueueClientSendMessageOptions {
            // Never expire: the default 7 days would silently drain the pool.
            message_time_to_live: Some(-1),
            visibility_timeout: Some(secs_i32(initial_invisibility)),
            ..Default::default()
        };
        clients
            .send
            .send_message(body, Some(options))
            .await
            .map(|_| ())
            .map_err(|e| self.fail("send message", Target::Queue, e))
    }

    pub async fn receive(&self, max: u32, lease: Duration) -> Result<Vec<Received>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let clients = self.clients()?;
        let lease = lease.clamp(
            Duration::from_secs(1),
            MAX_VISIBILITY - Duration::from_secs(1),
        );
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(max.min(MAX_BATCH) as i32),
            visibility_timeout: Some(secs_i32(lease)),
            ..Default::default()
        };
        let model = clients
            .other
            .receive_messages(Some(options))
            .await
            .map_err(|e| self.fail("receive messages", Target::Queue, e))?
            .into_model()
            .map_err(|_| QueueError::Other("receive messages: unexpected response body".into()))?;
        model
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let (Some(id), Some(pop_receipt)) = (m.message_id, m.pop_receipt) else {
                    return Err(QueueError::Other(
                        "receive messages: a message without id or pop receipt".into(),
                    ));
                };
                Ok(Received {
                    id,
                    pop_receipt,
                    text: m.message_text.unwrap_or_default(),
                    dequeue_count: m
                        .dequeue_count
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(1),
                    inserted_at: m.insertion_time,
                    expires_at: m.expiration_time,
                })
            })
            .collect()
    }

    pub async fn delete(&self, msg: &Received) -> Result<(), QueueError> {
        let clients = self.clients()?;
        clients
            .other
            .delete_message(&msg.id, &msg.pop_receipt, None)
            .await
            .map(|_| ())
            .map_err(|e| self.fail("delete message", Target::Message, e))
    }

    pub async fn release(&self, msg: &Received, after: Duration) -> Result<(), QueueError> {
        if after >= MAX_VISIBILITY {
            return Err(QueueError::Other(
                "release: delay must be under 7 days".into(),
            ));
        }
        let clients = self.clients()?;
        clients
            .other
            .update_message(&msg.id, &msg.pop_receipt, secs_i32(after), None)
            .await
            .map(|_| ())
            .map_err(|e| self.fail("release message", Target::Message, e))
    }

    pub async fn peek(&self, max: u32) -> Result<Vec<String>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let clients = self.clients()?;
        let options = QueueClientPeekMessagesOptions {
            number_of_messages: Some(max.min(MAX_BATCH) as i32),
            ..Default::default()
        };
        let model = clients
            .other
            .peek_messages(Some(options))
            .await
            .map_err(|e| self.fail("peek messages", Target::Queue, e))?
            .into_model()
            .map_err(|_| QueueError::Other("peek messages: unexpected response body".into()))?;
        Ok(model
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.message_text.unwrap_or_default())
            .collect())
    }

    pub async fn approximate_count(&self) -> Result<u64, QueueError> {
        let clients = self.clients()?;
        let rsp = clients
            .other
            .get_properties(None)
            .await
            .map_err(|e| self.fail("get queue properties", Target::Queue, e))?;
        let count = rsp.approximate_messages_count().map_err(|_| {
            QueueError::Other("get queue properties: malformed message count".into())
        })?;
        count
            .and_then(|c| u64::try_from(c).ok())
            .ok_or_else(|| QueueError::Other("get queue properties: no message count".into()))
    }

    pub async fn clear(&self) -> Result<(), QueueError> {
        let clients = self.clients()?;
        clients
            .other
            .clear(None)
            .await
            .map(|_| ())
            .map_err(|e| self.fail("clear queue", Target::Queue, e))
    }
}

fn build_sas_clients(auth: &Auth, http: &Arc<dyn HttpClient>) -> Result<Clients, QueueError> {
    let Auth::Sas {
        account,
        account_key,
        queue_url,
    } = auth
    else {
        unreachable!("only SAS clients are re-signed");
    };
    let now = OffsetDateTime::now_utc();
    let sas = account_sas(
        account,
        account_key,
        queue_url,
        now - SAS_CLOCK_SKEW,
        now + SAS_LIFETIME,
    )
    .map_err(|e| QueueError::Config(format!("cannot sign a SAS: {e}")))?;
    let mut url = queue_url.clone();
    url.set_query(Some(sas.expose()));
    let build = |retry: RetryOptions| {
        QueueClient::new(
            url.clone(),
            None,
            Some(QueueClientOptions {
                client_options: client_options(http, retry),
                ..Default::default()
            }),
        )
        // The SDK's message would quote the URL, SAS included.
        .map_err(|_| QueueError::Config("cannot build a queue client".into()))
    };
    Ok(Clients {
        send: build(RetryOptions::none())?,
        other: build(retry_options())?,
        signed_at: Some(std::time::Instant::now()),
    })
}

fn client_options(http: &Arc<dyn HttpClient>, retry: RetryOptions) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(http.clone())),
        retry,
        ..Default::default()
    }
}

/// A few quick retries for transport errors and 408/429/5xx, at most about 5 s in all.
fn retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(5),
        max_delay: azure_core::time::Duration::seconds(2),
    })
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(whole_seconds(d)).unwrap_or(i32::MAX)
}

/// What an operation addresses: a 404 on a message means a stale pop receipt or a deleted
/// message (`NotFound`); on the queue it means the queue itself is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Queue,
    Message,
}

fn map_error(op: &str, queue: &str, target: Target, e: &azure_core::Error) -> QueueError {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code
                .as_deref()
                .filter(|c| is_plain_code(c))
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            let status = *status;
            let detail = format!("{op} on queue {queue}: HTTP {}{code}", u16::from(status));
            match u16::from(status) {
                // Gone (404 MessageNotFound), or received or released again since
                // (400 PopReceiptMismatch): either way the caller no longer holds it.
                404 if target == Target::Message => QueueError::NotFound,
                400 if target == Target::Message
                    && error_code.as_deref() == Some("PopReceiptMismatch") =>
                {
                    QueueError::NotFound
                }
                404 => QueueError::Other(format!("{detail} (does the queue exist?)")),
                401 | 403 => QueueError::Config(format!(
                    "{detail} (check the account key, or the identity's Storage Queue Data Contributor role)"
                )),
                408 | 429 | 500..=599 => QueueError::Unavailable(detail),
                _ => QueueError::Other(detail),
            }
        }
        ErrorKind::Connection => {
            QueueError::Unavailable(format!("{op} on queue {queue}: cannot connect"))
        }
        ErrorKind::Io => QueueError::Unavailable(format!(
            "{op} on queue {queue}: request failed or timed out"
        )),
        ErrorKind::Credential => QueueError::Unavailable(format!(
            "{op} on queue {queue}: cannot get a managed identity token"
        )),
        other => QueueError::Other(format!("{op} on queue {queue}: {} error", kind_name(other))),
    }
}

/// Service error codes are identifiers like `MessageNotFound`; anything else is dropped.
fn is_plain_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn kind_name(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::HttpResponse { .. } => "http",
        ErrorKind::Connection => "connection",
        ErrorKind::Io => "io",
        ErrorKind::DataConversion => "data conversion",
        ErrorKind::Credential => "credential",
        _ => "other",
    }
}

/// The SDK transport: a reqwest client with a per-request timeout whose transport errors are
/// rebuilt without the request URL (reqwest quotes it, and the SDK logs transport errors).
#[derive(Debug)]
struct RedactingClient(reqwest::Client);

impl RedactingClient {
    fn new(timeout: Duration) -> Result<Self, QueueError> {
        ensure_crypto_provider();
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // As the SDK's own client: storage does not redirect, and a redirect would resend the SAS.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Self)
            .map_err(|_| QueueError::Config("cannot build the HTTP client".into()))
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out instead of `#[async_trait]` (same signature) to avoid a dependency for one impl.
impl HttpClient for RedactingClient {
    fn execute_request<'a, 'b, 'c>(
        &'a self,
        request: &'b Request,
    ) -> BoxFuture<'c, azure_core::Result<AsyncRawResponse>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            self.0.execute_request(request).await.map_err(|e| {
                let kind = e.kind().clone();
                let what = match e.into_inner() {
                    Ok(inner) => match inner.downcast::<reqwest::Error>() {
                        Ok(re) if re.is_timeout() => "request timed out",
                        Ok(re) if re.is_connect() => "connection failed",
                        _ => "request failed",
                    },
                    Err(_) => "request failed",
                };
                azure_core::Error::with_message(kind, what)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::connection::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn sas_conn(endpoint: &str) -> StorageConnection {
        StorageConnection::Sas {
            account: DEV_ACCOUNT.into(),
            account_key: Secret::new(DEV_ACCOUNT_KEY),
            queue_endpoint: Url::parse(endpoint).unwrap(),
        }
    }

    fn msg() -> Received {
        Received {
            id: "00000000-0000-0000-0000-000000000001".into(),
            pop_receipt: "AgAAAAMAAAAAAAAA".into(),
            text: String::new(),
            dequeue_count: 1,
            inserted_at: None,
            expires_at: None,
        }
    }

    /// Runs every operation and returns each error's Display and Debug text.
    async fn all_errors(q: &AzureQueue) -> Vec<(QueueError, String)> {
        let m = msg();
        // Concurrently: with retries and timeouts, one after the other would take a while.
        let (a, b, c, d, e, f, g, h) = tokio::join!(
            q.create_if_missing(),
            q.send("hello", Duration::ZERO),
            q.receive(1, Duration::from_secs(5)),
            q.delete(&m),
            q.release(&m, Duration::ZERO),
            q.peek(1),
            q.approximate_count(),
            q.clear(),
        );
        let results = vec![
            a.err(),
            b.err(),
            c.err(),
            d.err(),
            e.err(),
            f.err(),
            g.err(),
            h.err(),
        ];
        results
            .into_iter()
            .map(|e| {
                let e = e.expect("every operation should fail here");
                let text = format!("{e} {e:?}");
                (e, text)
            })
            .collect()
    }

    fn assert_clean(text: &str) {
        assert!(!text.contains("sig="), "{text}");
        assert!(!text.contains("sig%3D"), "{text}");
        assert!(!text.contains(DEV_ACCOUNT_KEY), "{text}");
        assert!(!text.contains("se="), "{text}");
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable_and_clean() {
        // Bind then drop: nothing listens on this port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let q = AzureQueue::new(
            &sas_conn(&format!("http://127.0.0.1:{port}/devstoreaccount1")),
            "some-queue",
            Duration::from_secs(2),
        )
        .unwrap();
        for (e, text) in all_errors(&q).await {
            assert!(matches!(e, QueueError::Unavailable(_)), "{text}");
            assert_clean(&text);
        }
        assert_clean(&format!("{q:?}"));
    }

    #[tokio::test]
    async fn timeouts_are_unavailable_and_clean() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let q = AzureQueue::new(
            &sas_conn(&format!("{}/devstoreaccount1", server.uri())),
            "some-queue",
            Duration::from_millis(200),
        )
        .unwrap();
        for (e, text) in all_errors(&q).await {
            assert!(matches!(e, QueueError::Unavailable(_)), "{text}");
            assert!(text.contains("timed out"), "{text}");
            assert_clean(&text);
        }
    }

    #[tokio::test]
    async fn http_statuses_map_and_stay_clean() {
        for (status, code) in [
            (500, "InternalError"),
            (503, "ServerBusy"),
            (403, "AuthenticationFailed"),
            (404, "MessageNotFound"),
            (400, "PopReceiptMismatch"),
            (400, "InvalidQueryParameterValue"),
        ] {
            let server = MockServer::start().await;
            // A hostile body that quotes the request URL, SAS and all.
            let body = "<Error><Code>X</Code><Message>sig=abc se=2020</Message></Error>";
            Mock::given(any())
                .respond_with(
                    ResponseTemplate::new(status)
                        .insert_header("x-ms-error-code", code)
                        .set_body_string(body),
                )
                .mount(&server)
                .await;
            let q = AzureQueue::new(
                &sas_conn(&format!("{}/devstoreaccount1", server.uri())),
                "some-queue",
                Duration::from_secs(2),
            )
            .unwrap();
            // all_errors' order: indexes 3 and 4 are delete and release (message operations).
            for (i, (e, text)) in all_errors(&q).await.into_iter().enumerate() {
                assert_clean(&text);
                let message_op = i == 3 || i == 4;
                match (status, code) {
                    (500 | 503, _) => assert!(matches!(e, QueueError::Unavailable(_)), "{text}"),
                    (403, _) => assert!(matches!(e, QueueError::Config(_)), "{text}"),
                    (404, _) | (400, "PopReceiptMismatch") if message_op => {
                        assert_eq!(e, QueueError::NotFound, "{text}")
                    }
                    _ => assert!(matches!(e, QueueError::Other(_)), "{text}"),
                }
                if e != QueueError::NotFound {
                    assert!(text.contains(&status.to_string()), "{text}");
                    assert!(text.contains(code), "{text}");
                }
            }
        }
    }

    #[tokio::test]
    async fn send_is_never_retried_and_sends_ttl_minus_one() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let q = AzureQueue::new(
            &sas_conn(&format!("{}/devstoreaccount1", server.uri())),
            "some-queue",
            Duration::from_secs(2),
        )
        .unwrap();
        let err = q.send("x", Duration::from_millis(1500)).await.unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)));
        let reqs = server.received_requests().await.unwrap();
        assert_eq!(reqs.len(), 1, "a send must not be retried");
        let url = &reqs[0].url;
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q.get("messagettl").map(String::as_str), Some("-1"));
        assert_eq!(q.get("visibilitytimeout").map(String::as_str), Some("2"));
        assert!(q.contains_key("sig"));
        assert_eq!(url.path(), "/devstoreaccount1/some-queue/messages");

        // Other operations retry (3 retries: 4 requests).
        server.reset().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let qa = AzureQueue::new(
            &sas_conn(&format!("{}/devstoreaccount1", server.uri())),
            "some-queue",
            Duration::from_secs(2),
        )
        .unwrap();
        qa.peek(1).await.unwrap_err();
        assert_eq!(server.received_requests().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn transport_errors_drop_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RedactingClient::new(Duration::from_secs(2)).unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/a/q?sv=1&sig=SECRETSIG")).unwrap();
        let request = Request::new(url, azure_core::http::Method::Get);
        let err = client.execute_request(&request).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Connection);
        let mut text = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(!text.contains("SECRETSIG"), "{text}");
    }

    #[test]
    fn invalid_queue_name_is_config() {
        let err = AzureQueue::new(
            &sas_conn("http://127.0.0.1:1/devstoreaccount1"),
            "Bad_Name",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, QueueError::Config(_)));
    }

    #[test]
    fn managed_identity_client_builds_over_https() {
        let conn = StorageConnection::ManagedIdentity {
            queue_service_uri: Url::parse("https://acct1.queue.core.windows.net").unwrap(),
            client_id: Some("11111111-2222-3333-4444-555555555555".into()),
        };
        let q = AzureQueue::new(&conn, "room-creation-queue", Duration::from_secs(5)).unwrap();
        assert_eq!(
            format!("{q:?}"),
            "AzureQueue { url: \"https://acct1.queue.core.windows.net/room-creation-queue\", .. }"
        );
    }
}
