//! An in-process Pexip Management API simulator, for `maxconf dev` and tests.
//!
//! It answers over real HTTP like a Management Node: the conference (VMR) configuration
//! resource, the status API's running conferences, `/oauth/token/`, Basic or Bearer auth,
//! and test hooks for latency and faults (error statuses, "created but answered 500",
//! connections closed without a response).

mod http;
mod oauth;
mod store;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use store::Store;

/// How the simulator authenticates `/api/…` requests.
#[derive(Clone, PartialEq, Eq)]
pub enum SimAuth {
    /// Anything goes (used by `maxconf dev`); `/oauth/token/` issues tokens to any client id.
    Open,
    /// HTTP Basic with these credentials.
    Basic { username: String, password: String },
    /// Bearer tokens issued by `/oauth/token/` to this client id.
    OAuth { client_id: String },
}

impl fmt::Debug for SimAuth {
    // The password never appears in Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::OAuth { client_id } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub auth: SimAuth,
    /// Delay before every `/api/…` answer (changeable later with [`Simulator::set_latency`]).
    pub latency: Duration,
    /// Default `limit` of list responses.
    pub page_size: usize,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            auth: SimAuth::Open,
            latency: Duration::ZERO,
            page_size: 20,
            token_lifetime_secs: 3600,
        }
    }
}

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    pub method: String,
    pub path_and_query: String,
    /// Whether an `Authorization` header was present (its value is never recorded).
    pub has_authorization: bool,
}

/// Counters since construction (or [`Simulator::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every request received (`/api/…`, `/oauth/token/`, anything else).
    pub requests: u64,
    /// Requests by HTTP method ("GET", "POST", …).
    pub by_method: BTreeMap<String, u64>,
    /// Rooms created through the API (including those answered 500 by `create_then_fail`).
    pub creates: u64,
    /// DELETEs on the conference collection URL: a bulk delete, which maxconf must never send.
    pub collection_deletes: u64,
    /// Requests to `/oauth/token/` and how many got a token.
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// `/api/…` requests answered 401.
    pub unauthorized: u64,
    /// `/api/…` requests answered by `fail_next`, `create_then_fail` or `set_down`.
    pub injected_faults: u64,
    /// Connections closed without a response by `drop_next`.
    pub dropped: u64,
    /// Most `/api/…` requests in flight at once.
    pub max_in_flight: u64,
}

impl SimStats {
    /// Requests received with this method.
    pub fn count(&self, method: &str) -> u64 {
        self.by_method.get(method).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Faults {
    fail_next: u32,
    fail_status: u16,
    create_then_fail: u32,
    drop_next: u32,
}

struct Inner {
    auth: SimAuth,
    page_size: usize,
    token_lifetime_secs: AtomicU64,
    latency_micros: AtomicU64,
    down: AtomicBool,
    in_flight: AtomicU64,
    faults: Mutex<Faults>,
    store: Mutex<Store>,
    /// Issued access tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    log: Mutex<Vec<SimRequest>>,
    stats: Mutex<SimStats>,
    holds: Mutex<Vec<Hold>>,
}

/// The simulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("auth", &self.inner.auth)
            .field("rooms", &self.room_count())
            .finish_non_exhaustive()
    }
}

/// A test hook's lock; a panic elsewhere must not wedge the simulator.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What the fault hooks decided for one `/api/…` request.
enum Fault {
    Drop,
    Status(u16),
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: config.auth,
                page_size: config.page_size,
                token_lifetime_secs: AtomicU64::new(config.token_lifetime_secs),
                latency_micros: AtomicU64::new(micros(config.latency)),
                down: AtomicBool::new(false),
                in_flight: AtomicU64::new(0),
                faults: Mutex::new(Faults::default()),
                store: Mutex::new(Store::new()),
                tokens: Mutex::new(HashMap::new()),
                log: Mutex::new(Vec::new()),
                stats: Mutex::new(SimStats::default()),
                holds: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The simulator's routes with its state. Mounted in another server, `drop_next` answers
    /// 502 instead of closing the connection (only [`Simulator::serve`] can close it).
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serves on `listener` until the task running this future is dropped or aborted; then
    /// its open connections fail too (as when a server goes away), not only new ones.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        self.serve_until_closed(listener, Arc::new(AtomicBool::new(false)))
            .await
    }

    async fn serve_until_closed(
        self,
        listener: TcpListener,
        closed: Arc<AtomicBool>,
    ) -> io::Result<()> {
        // axum runs each connection in its own task, which outlives this future.
        let _close_on_drop = CloseOnDrop(closed.clone());
        let app = self
            .router()
            .into_make_service_with_connect_info::<ConnHandle>();
        axum::serve(
            SimListener {
                inner: listener,
                closed,
            },
            app,
        )
        .await
    }

    /// Binds 127.0.0.1 on a free port and serves there in a tokio task.
    pub async fn spawn(config: SimConfig) -> io::Result<SimServer> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let sim = Self::new(config);
        let closed = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sim.clone().serve_until_closed(listener, closed.clone()));
        Ok(SimServer {
            addr,
            sim,
            task,
            closed,
        })
    }

    // ---- latency and faults ----

    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .latency_micros
            .store(micros(latency), Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_micros.load(Ordering::Relaxed))
    }

    /// The next `n` `/api/…` requests answer `status` without doing anything (429 and 503
    /// carry `Retry-After: 1`). Panics unless `status` is 4xx or 5xx.
    pub fn fail_next(&self, n: u32, status: u16) {
        assert!(
            (400..=599).contains(&status),
            "fail_next wants an error status, got {status}"
        );
        let mut f = lock(&self.inner.faults);
        f.fail_next = n;
        f.fail_status = status;
    }

    /// The next `n` successful room creations still answer 500 (no Location): the retry
    /// hazard. A POST that fails validation does not use one up.
    pub fn create_then_fail(&self, n: u32) {
        lock(&self.inner.faults).create_then_fail = n;
    }

    /// The next `n` `/api/…` requests get their connection closed without a response.
    pub fn drop_next(&self, n: u32) {
        lock(&self.inner.faults).drop_next = n;
    }

    /// While down, every `/api/…` request answers 503 with `Retry-After: 1`.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::Relaxed);
    }

    /// Holds the next `/api/…` request with this method whose path starts with `path_prefix`
    /// before it changes anything, until [`Hold::release`]: a deterministic interleaving for
    /// tests (a PATCH that lands only after the maintainer looked, say).
    pub fn hold_next(&self, method: &str, path_prefix: &str) -> Hold {
        let hold = Hold {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            arrived: Arc::new(tokio::sync::Semaphore::new(0)),
            released: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        lock(&self.inner.holds).push(hold.clone());
        hold
    }

    /// Clears `fail_next`, `create_then_fail`, `drop_next` and `set_down`.
    pub fn clear_faults(&self) {
        *lock(&self.inner.faults) = Faults::default();
        self.set_down(false);
    }

    // ---- auth ----

    /// Makes every token issued so far invalid (their next use answers 401).
    pub fn revoke_tokens(&self) {
        lock(&self.inner.tokens).clear();
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime_secs(&self, secs: u64) {
        self.inner
            .token_lifetime_secs
            .store(secs, Ordering::Relaxed);
    }

    // ---- running conferences (status API) ----

    /// Starts a conference in the room `name` (also for a name with no VMR); returns its
    /// status id. Starting one that is running returns the existing id.
    pub fn start_conference(&self, name: &str) -> String {
        let id = http::uuid_like();
        lock(&self.inner.store).start_conference(name, id, &http::now_naive())
    }

    /// Ends the conference in room `name`; false if none was running.
    pub fn end_conference(&self, name: &str) -> bool {
        lock(&self.inner.store).end_conference(name)
    }

    // ---- rooms ----

    /// Every room as the API returns it, ordered by id.
    pub fn rooms(&self) -> Vec<Value> {
        lock(&self.inner.store).all()
    }

    pub fn room_by_name(&self, name: &str) -> Option<Value> {
        lock(&self.inner.store)
            .by_name(name)
            .cloned()
            .map(Value::Object)
    }

    pub fn room_count(&self) -> usize {
        lock(&self.inner.store).len()
    }

    /// Seeds a room from a create body (validated like a POST); returns its id, or the
    /// field errors a POST would answer. A string `creation_time` in the body is kept, to
    /// seed old rooms.
    pub fn insert_room(&self, room: Value) -> Result<u64, Value> {
        let Some(body) = room.as_object() else {
            return Err(serde_json::json!({"error": "a room must be a JSON object"}));
        };
        let now = match body.get("creation_time") {
            Some(Value::String(t)) => t.clone(),
            _ => http::now_naive(),
        };
        lock(&self.inner.store)
            .create(body, &now)
            .map_err(|e| serde_json::json!({ "conference": e }))
    }

    // ---- observability ----

    pub fn request_log(&self) -> Vec<SimRequest> {
        lock(&self.inner.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.inner.log).clear();
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.inner.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = SimStats::default();
    }

    // ---- internals used by the handlers ----

    fn record(&self, method: &str, path_and_query: &str, has_authorization: bool) {
        lock(&self.inner.log).push(SimRequest {
            method: method.to_owned(),
            path_and_query: path_and_query.to_owned(),
            has_authorization,
        });
        let mut s = lock(&self.inner.stats);
        s.requests += 1;
        *s.by_method.entry(method.to_owned()).or_default() += 1;
    }

    fn bump(&self, f: impl FnOnce(&mut SimStats)) {
        f(&mut lock(&self.inner.stats));
    }

    /// Decides, and uses up, the fault for one `/api/…` request.
    fn take_fault(&self) -> Option<Fault> {
        if self.inner.down.load(Ordering::Relaxed) {
            return Some(Fault::Status(503));
        }
        let mut f = lock(&self.inner.faults);
        if f.drop_next > 0 {
            f.drop_next -= 1;
            return Some(Fault::Drop);
        }
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Some(Fault::Status(f.fail_status));
        }
        None
    }

    fn take_hold(&self, method: &str, path: &str) -> Option<Hold> {
        let mut holds = lock(&self.inner.holds);
        let at = holds
            .iter()
            .position(|h| h.method == method && path.starts_with(&h.path_prefix))?;
        Some(holds.remove(at))
    }

    fn take_create_failure(&self) -> bool {
        let mut f = lock(&self.inner.faults);
        let hit = f.create_then_fail > 0;
        f.create_then_fail = f.create_then_fail.saturating_sub(1);
        hit
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.bump(|s| s.max_in_flight = s.max_in_flight.max(now));
        InFlight(&self.inner.in_flight)
    }
}

/// One held request (see [`Simulator::hold_next`]).
#[derive(Debug, Clone)]
pub struct Hold {
    method: String,
    path_prefix: String,
    arrived: Arc<tokio::sync::Semaphore>,
    released: Arc<tokio::sync::Semaphore>,
}

impl Hold {
    /// Waits until the held request has arrived (and is waiting).
    pub async fn arrived(&self) {
        let _ = self.arrived.acquire().await.map(|p| p.forget());
    }

    /// Lets the held request go on.
    pub fn release(&self) {
        self.released.add_permits(1);
    }

    async fn wait(&self) {
        self.arrived.add_permits(1);
        let _ = self.released.acquire().await.map(|p| p.forget());
    }
}

/// Counts an `/api/…` request in flight until dropped (also when the client hangs up).
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A simulator serving on 127.0.0.1 in a tokio task. On drop the task is aborted and the
/// connections it opened fail at their next read or write.
#[derive(Debug)]
pub struct SimServer {
    pub addr: SocketAddr,
    pub sim: Simulator,
    task: JoinHandle<io::Result<()>>,
    closed: Arc<AtomicBool>,
}

impl SimServer {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

// ---- closing a connection without a response ----
//
// The listener wraps each connection so a handler can "kill" it: once killed, its reads and
// writes fail, so hyper cannot write the response and closes the socket. The kill switch
// reaches the handler as connect info. A server-wide switch closes every connection.

struct SimListener {
    inner: TcpListener,
    closed: Arc<AtomicBool>,
}

struct CloseOnDrop(Arc<AtomicBool>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimIo, SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let io = SimIo {
            inner: stream,
            killed: Arc::new(AtomicBool::new(false)),
            closed: self.closed.clone(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct SimIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl SimIo {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped by the simulator",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The kill switch of the connection a request came on.
#[derive(Clone)]
struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Self(stream.io().killed.clone())
    }
}

#[cfg(test)]
mod tests;
