//! Publishing frame records to message brokers: MQTT (`rumqttc`) and Redis Streams
//! (`redis`). The `segpublish` element is a thin shell over this module.
//!
//! A [`Publisher`] owns a bounded in-memory queue ([`Overflow`]: `block` or `drop-oldest`)
//! drained by one thread, which holds the broker connection, reconnects with back-off
//! (0.5 s doubling to 8 s) and re-sends what was not confirmed (MQTT QoS 1: not yet
//! PUBACKed; Redis: the XADD batch whose reply did not come), so that with `block` no
//! record is lost (a record may arrive twice after a reconnection) and with `drop-oldest`
//! the loss is exactly the `dropped` counter.
//!
//! TLS (`mqtts://`, `rediss://`) is not built in: both crates would pull rustls and a
//! certificate store; such URLs are refused with [`BrokerError::TlsNotBuiltIn`].
//!
//! Credentials come from the URL (`scheme://user:pass@host:port/...`) or, when the URL
//! has none, from `SEGSTREAM_BROKER_USER` / `SEGSTREAM_BROKER_PASSWORD`; every message
//! shows the URL through [`BrokerUrl::redacted`] (no password, no user).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{RECONNECT_FIRST_DELAY as BACKOFF_START, RECONNECT_MAX_DELAY as BACKOFF_MAX, lock};

/// Environment variables read when the URL holds no credentials.
pub const USER_ENV: &str = "SEGSTREAM_BROKER_USER";
pub const PASSWORD_ENV: &str = "SEGSTREAM_BROKER_PASSWORD";

/// Default `MAXLEN ~ N` of the Redis stream.
pub const DEFAULT_MAXLEN: u64 = 100_000;
/// Records handed to the broker but not yet confirmed, at most (MQTT in-flight window,
/// Redis pipeline batch).
const WINDOW: usize = 64;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    #[error("invalid broker URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{url}: TLS is not built in (use mqtt:// or redis://, e.g. through a TLS-terminating proxy)")]
    TlsNotBuiltIn { url: String },
    #[error("cannot connect to broker {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("broker {url} refused the credentials: {reason}")]
    Auth { url: String, reason: String },
    #[error("broker {url}: {reason}")]
    Other { url: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mqtt,
    Redis,
}

/// A parsed `--publish` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// MQTT topic or Redis stream key, possibly with `{stream}`.
    pub target: String,
    /// `?qos=0|1` (MQTT).
    pub qos: Option<u8>,
    /// `?maxlen=N` (Redis).
    pub maxlen: Option<u64>,
    /// `?masks=false`.
    pub masks: Option<bool>,
    /// `?overflow=block|drop-oldest` (the element's `overflow`).
    pub overflow: Option<Overflow>,
    /// `?queue-size=N` (the element's `queue-size`).
    pub queue_size: Option<usize>,
    /// `?connect-timeout=SECONDS`.
    pub connect_timeout: Option<Duration>,
    /// `?flush-timeout=SECONDS`.
    pub flush_timeout: Option<Duration>,
    /// `?wait=true|false` (the element's `wait-for-broker`).
    pub wait_for_broker: Option<bool>,
}

impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:pass@host/...` → `scheme://***@host/...` (for messages about URLs that
/// did not parse).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerError> {
        let bad = |reason: &str| BrokerError::InvalidUrl { url: redact(url), reason: reason.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://HOST:PORT/TOPIC or redis://HOST:PORT/KEY"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" => Scheme::Mqtt,
            "redis" => Scheme::Redis,
            "mqtts" | "rediss" => return Err(BrokerError::TlsNotBuiltIn { url: redact(url) }),
            other => return Err(bad(&format!("unknown scheme {other:?} (mqtt or redis)"))),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            bad(match scheme {
                Scheme::Mqtt => "no topic (mqtt://HOST:PORT/TOPIC)",
                Scheme::Redis => "no stream key (redis://HOST:PORT/KEY)",
            })
        })?;
        let target = pct_decode(path);
        if target.is_empty() {
            return Err(bad("empty topic / stream key"));
        }
        if scheme == Scheme::Mqtt && (target.contains('#') || target.contains('+')) {
            return Err(bad("wildcards (# +) are not allowed in a topic to publish to"));
        }
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(pct_decode(u)), Some(pct_decode(p))),
                None => (Some(pct_decode(u)), None),
            },
            None => (None, None),
        };
        // `redis://:pass@host` (no user): Redis' `requirepass` password.
        let user = user.filter(|u| !u.is_empty());
        let default_port = if scheme == Scheme::Mqtt { 1883 } else { 6379 };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("bad port {p:?}")))?,
            None => default_port,
        };
        let mut out = BrokerUrl {
            scheme,
            host,
            port,
            user,
            password,
            target,
            qos: None,
            maxlen: None,
            masks: None,
            overflow: None,
            queue_size: None,
            connect_timeout: None,
            flush_timeout: None,
            wait_for_broker: None,
        };
        let boolean = |k: &str, v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(bad(&format!("{k}={v}: true or false"))),
        };
        let seconds = |k: &str, v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0 && *t <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(&format!("{k}={v}: seconds, more than 0 and at most 86400")))
        };
        for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match (k, scheme) {
                ("qos", Scheme::Mqtt) => out.qos = Some(match v {
                    "0" => 0,
                    "1" => 1,
                    _ => return Err(bad(&format!("qos={v}: 0 or 1"))),
                }),
                ("maxlen", Scheme::Redis) => {
                    out.maxlen = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad(&format!("maxlen={v}: a positive integer")))?)
                }
                ("masks", _) => out.masks = Some(boolean(k, v)?),
                ("overflow", _) => out.overflow = Some(v.parse().map_err(|e: String| bad(&e))?),
                ("queue-size", _) => {
                    out.queue_size =
                        Some(v.parse().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| bad(&format!("queue-size={v}: 1 to 1000000")))?)
                }
                ("connect-timeout", _) => out.connect_timeout = Some(seconds(k, v)?),
                ("flush-timeout", _) => out.flush_timeout = Some(seconds(k, v)?),
                ("wait", _) => out.wait_for_broker = Some(boolean(k, v)?),
                _ => return Err(bad(&format!("unknown option {k:?}"))),
            }
        }
        Ok(out)
    }

    /// The URL without credentials (what every message shows).
    pub fn redacted(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Mqtt => "mqtt",
            Scheme::Redis => "redis",
        };
        let cred = if self.user.is_some() || self.password.is_some() { "***@" } else { "" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{cred}{host}:{}/{}", self.port, self.target)
    }

    /// The full URL again, credentials included (for the element's `location`; never
    /// print it).
    pub fn to_url_string(&self) -> String {
        let enc = |v: &str| {
            v.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        let mut cred = String::new();
        if let Some(u) = &self.user {
            cred.push_str(&enc(u));
        }
        if let Some(p) = &self.password {
            cred.push(':');
            cred.push_str(&enc(p));
        }
        if !cred.is_empty() {
            cred.push('@');
        }
        let scheme = if self.scheme == Scheme::Mqtt { "mqtt" } else { "redis" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let mut q = Vec::new();
        if let Some(v) = self.qos {
            q.push(format!("qos={v}"));
        }
        if let Some(v) = self.maxlen {
            q.push(format!("maxlen={v}"));
        }
        if let Some(v) = self.masks {
            q.push(format!("masks={v}"));
        }
        if let Some(v) = self.overflow {
            q.push(format!("overflow={}", v.as_str()));
        }
        if let Some(v) = self.queue_size {
            q.push(format!("queue-size={v}"));
        }
        if let Some(v) = self.connect_timeout {
            q.push(format!("connect-timeout={}", v.as_secs_f64()));
        }
        if let Some(v) = self.flush_timeout {
            q.push(format!("flush-timeout={}", v.as_secs_f64()));
        }
        if let Some(v) = self.wait_for_broker {
            q.push(format!("wait={v}"));
        }
        let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        let target = self.target.replace('%', "%25").replace('?', "%3F");
        format!("{scheme}://{cred}{host}:{}/{target}{q}", self.port)
    }

    /// Credentials: the URL's, else the environment's.
    fn credentials(&self) -> (Option<String>, Option<String>) {
        if self.user.is_some() || self.password.is_some() {
            return (self.user.clone(), self.password.clone());
        }
        let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        (env(USER_ENV), env(PASSWORD_ENV))
    }
}

/// What a full queue does with a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Wait for room (back-pressure on the pipeline).
    #[default]
    Block,
    /// Drop the oldest queued record (counted in `dropped`).
    DropOldest,
}

impl Overflow {
    /// The name the property, the URL option and [`FromStr`](std::str::FromStr) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop-oldest",
        }
    }
}

impl std::str::FromStr for Overflow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(Overflow::Block),
            "drop-oldest" => Ok(Overflow::DropOldest),
            _ => Err(format!("overflow {s:?}: block or drop-oldest")),
        }
    }
}

/// How to publish (the element's properties).
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub queue_size: usize,
    pub overflow: Overflow,
    pub connect_timeout: Duration,
    pub wait_for_broker: bool,
    /// MQTT QoS when the URL has no `qos=`.
    pub qos: u8,
    /// Redis `MAXLEN ~ N` when the URL has no `maxlen=`.
    pub maxlen: u64,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            queue_size: 1000,
            overflow: Overflow::Block,
            connect_timeout: Duration::from_secs(5),
            wait_for_broker: false,
            qos: 1,
            maxlen: DEFAULT_MAXLEN,
        }
    }
}

/// Counters, shared with the publisher thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records given to [`Publisher::send`].
    pub queued: AtomicU64,
    /// Records the broker confirmed (MQTT QoS 1: PUBACK; QoS 0: written; Redis: XADD reply).
    pub published: AtomicU64,
    /// Records dropped by `overflow=drop-oldest`.
    pub dropped: AtomicU64,
    /// Records sent again after a reconnection (may arrive twice).
    pub resent: AtomicU64,
    pub reconnects: AtomicU64,
    /// Records still queued or unconfirmed when the flush timed out.
    pub unsent: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub queued: u64,
    pub published: u64,
    pub dropped: u64,
    pub resent: u64,
    pub reconnects: u64,
    pub unsent: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        StatsSnapshot {
            queued: g(&self.queued),
            published: g(&self.published),
            dropped: g(&self.dropped),
            resent: g(&self.resent),
            reconnects: g(&self.reconnects),
            unsent: g(&self.unsent),
        }
    }
}

struct QueueState {
    items: VecDeque<Arc<str>>,
    closed: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    cap: usize,
    overflow: Overflow,
}

impl Queue {
    fn push(&self, item: Arc<str>, stats: &Stats, stop: &AtomicBool) {
        let mut s = lock(&self.state);
        while s.items.len() >= self.cap {
            match self.overflow {
                Overflow::DropOldest => {
                    s.items.pop_front();
                    stats.dropped.fetch_add(1, Ordering::SeqCst);
                }
                Overflow::Block => {
                    if stop.load(Ordering::SeqCst) {
                        stats.queued.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    s = self.changed.wait_timeout(s, Duration::from_millis(100)).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
        s.items.push_back(item);
        self.changed.notify_all();
    }

    /// Up to `max` records, waiting up to `wait` for the first. `None`: closed and empty.
    fn pop(&self, max: usize, wait: Duration) -> Option<Vec<Arc<str>>> {
        let mut s = lock(&self.state);
        if s.items.is_empty() && !s.closed {
            s = self.changed.wait_timeout(s, wait).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        if s.items.is_empty() && s.closed {
            return None;
        }
        let n = s.items.len().min(max);
        let out: Vec<_> = s.items.drain(..n).collect();
        if n > 0 {
            self.changed.notify_all();
        }
        Some(out)
    }

    fn len(&self) -> usize {
        lock(&self.state).items.len()
    }
}

/// Sleep `d`, waking early when `stop` is set. False when stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

/// A running publisher: records in through [`send`](Self::send), out to the broker.
pub struct Publisher {
    url: BrokerUrl,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Set by the thread when it has nothing left to send (queue closed and drained).
    done: Arc<AtomicBool>,
    /// Set while `send` must not block (the element is flushing or stopping).
    interrupt: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

trait Connector: Send + 'static {
    type Conn;
    fn connect(&mut self, timeout: Duration) -> Result<Self::Conn, BrokerError>;
}

impl Publisher {
    /// Connect (within `connect_timeout`, or waiting with back-off with
    /// `wait_for_broker`) and start the publisher thread. `stream` replaces `{stream}`.
    pub fn start(url: &BrokerUrl, stream: &str, opts: &PublishOptions) -> Result<Publisher, BrokerError> {
        let mut url = url.clone();
        url.target = url.target.replace("{stream}", stream);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState { items: VecDeque::new(), closed: false }),
            changed: Condvar::new(),
            cap: opts.queue_size.max(1),
            overflow: opts.overflow,
        });
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let ctx = Ctx { queue: queue.clone(), stats: stats.clone(), stop: stop.clone(), done: done.clone(), timeout: opts.connect_timeout };
        let thread = match url.scheme {
            Scheme::Redis => {
                let mut c = RedisConnector::new(&url, opts.maxlen)?;
                let conn = initial(&mut c, opts, &stop)?;
                std::thread::Builder::new().name("segpublish-redis".into()).spawn(move || redis_loop(c, conn, ctx))
            }
            Scheme::Mqtt => {
                let mut c = MqttConnector::new(&url, opts.qos)?;
                let conn = initial(&mut c, opts, &stop)?;
                std::thread::Builder::new().name("segpublish-mqtt".into()).spawn(move || mqtt_loop(c, conn, ctx))
            }
        }
        .map_err(|e| BrokerError::Other { url: url.redacted(), reason: format!("cannot start the publisher thread: {e}") })?;
        Ok(Publisher { url, queue, stats, stop, done, interrupt: Arc::new(AtomicBool::new(false)), thread: Mutex::new(Some(thread)) })
    }

    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Queue one record (blocks with `overflow=block` while the queue is full).
    pub fn send(&self, record: String) {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.queue.push(record.into(), &self.stats, &self.interrupt);
    }

    /// Make a blocked [`send`](Self::send) return (its record is then not queued) until
    /// [`resume`](Self::resume).
    pub fn interrupt(&self) {
        self.interrupt.store(true, Ordering::SeqCst);
        self.queue.changed.notify_all();
    }

    pub fn resume(&self) {
        self.interrupt.store(false, Ordering::SeqCst);
    }

    /// Close the queue and wait up to `timeout` for everything to be confirmed; then stop
    /// the thread. What was left is counted in `unsent`.
    pub fn finish(&self, timeout: Duration) -> StatsSnapshot {
        {
            let mut s = lock(&self.queue.state);
            s.closed = true;
            self.queue.changed.notify_all();
        }
        let end = Instant::now() + timeout;
        while !self.done.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shutdown();
        self.stats()
    }

    /// Stop the thread now (what is queued is not sent).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.interrupt();
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Ctx {
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    timeout: Duration,
}

fn e_stopped() -> BrokerError {
    BrokerError::Other { url: String::new(), reason: "stopped while waiting for the broker".into() }
}

fn initial<C: Connector>(c: &mut C, opts: &PublishOptions, stop: &AtomicBool) -> Result<C::Conn, BrokerError> {
    let mut backoff = BACKOFF_START;
    loop {
        match c.connect(opts.connect_timeout) {
            Ok(conn) => return Ok(conn),
            // Bad credentials do not get better by waiting.
            Err(e @ BrokerError::Auth { .. }) => return Err(e),
            Err(e) if !opts.wait_for_broker => return Err(e),
            Err(_) => {
                if !sleep_unless(stop, backoff) {
                    return Err(e_stopped());
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Reconnect with back-off until connected or stopped.
fn reconnect<C: Connector>(c: &mut C, ctx: &Ctx) -> Option<C::Conn> {
    let mut backoff = BACKOFF_START;
    loop {
        if !sleep_unless(&ctx.stop, backoff) {
            return None;
        }
        if let Ok(conn) = c.connect(ctx.timeout) {
            ctx.stats.reconnects.fetch_add(1, Ordering::SeqCst);
            return Some(conn);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

// ---------------------------------------------------------------- Redis

struct RedisConnector {
    url: BrokerUrl,
    info: redis::ConnectionInfo,
    maxlen: u64,
}

impl RedisConnector {
    fn new(url: &BrokerUrl, maxlen: u64) -> Result<Self, BrokerError> {
        use redis::IntoConnectionInfo;
        let (user, pass) = url.credentials();
        let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(u) = user {
            settings = settings.set_username(u);
        }
        if let Some(p) = pass {
            settings = settings.set_password(p);
        }
        let info = redis::ConnectionAddr::Tcp(url.host.clone(), url.port)
            .into_connection_info()
            .map_err(|e| BrokerError::InvalidUrl { url: url.redacted(), reason: e.to_string() })?
            .set_redis_settings(settings);
        Ok(RedisConnector { url: url.clone(), info, maxlen: url.maxlen.unwrap_or(maxlen) })
    }

    fn classify(&self, e: &redis::RedisError) -> BrokerError {
        let url = self.url.redacted();
        let text = e.to_string();
        if e.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("NOAUTH") || text.contains("WRONGPASS") {
            BrokerError::Auth { url, reason: text }
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() {
            BrokerError::Unreachable { url, reason: text }
        } else {
            BrokerError::Other { url, reason: text }
        }
    }
}

impl Connector for RedisConnector {
    type Conn = redis::Connection;
    fn connect(&mut self, timeout: Duration) -> Result<redis::Connection, BrokerError> {
        let client = redis::Client::open(self.info.clone()).map_err(|e| self.classify(&e))?;
        let mut conn = client.get_connection_with_timeout(timeout).map_err(|e| self.classify(&e))?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
        // A server with `requirepass` answers the first command (not the connection).
        redis::cmd("PING").query::<String>(&mut conn).map_err(|e| self.classify(&e))?;
        Ok(conn)
    }
}

fn redis_loop(mut c: RedisConnector, conn: redis::Connection, ctx: Ctx) {
    let mut conn = Some(conn);
    let mut batch: Vec<Arc<str>> = Vec::new();
    let mut retry = false;
    loop {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        if batch.is_empty() {
            match ctx.queue.pop(WINDOW, Duration::from_millis(50)) {
                None => {
                    ctx.done.store(true, Ordering::SeqCst);
                    break;
                }
                Some(b) => batch = b,
            }
            if batch.is_empty() {
                continue;
            }
        }
        let Some(cn) = conn.as_mut() else {
            conn = reconnect(&mut c, &ctx);
            continue;
        };
        let mut pipe = redis::pipe();
        for r in &batch {
            pipe.cmd("XADD").arg(&c.url.target).arg("MAXLEN").arg("~").arg(c.maxlen).arg("*").arg("record").arg(r.as_ref()).ignore();
        }
        if retry {
            ctx.stats.resent.fetch_add(batch.len() as u64, Ordering::SeqCst);
        }
        match pipe.query::<()>(cn) {
            Ok(()) => {
                ctx.stats.published.fetch_add(batch.len() as u64, Ordering::SeqCst);
                batch.clear();
                retry = false;
            }
            Err(_) => {
                // Some of the batch may have been added: it is sent again (duplicates).
                retry = true;
                conn = None;
            }
        }
    }
    ctx.stats.unsent.store((batch.len() + ctx.queue.len()) as u64, Ordering::SeqCst);
}

// ---------------------------------------------------------------- MQTT

struct MqttConnector {
    url: BrokerUrl,
    qos: rumqttc::QoS,
    id: String,
}

struct MqttConn {
    client: rumqttc::Client,
    connection: rumqttc::Connection,
}

impl MqttConnector {
    fn new(url: &BrokerUrl, qos: u8) -> Result<Self, BrokerError> {
        let qos = if url.qos.unwrap_or(qos) == 0 { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!("segpublish-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Ok(MqttConnector { url: url.clone(), qos, id })
    }
}

impl Connector for MqttConnector {
    type Conn = MqttConn;
    fn connect(&mut self, timeout: Duration) -> Result<MqttConn, BrokerError> {
        use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};
        let mut o = rumqttc::MqttOptions::new(self.id.clone(), self.url.host.clone(), self.url.port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_clean_session(true);
        o.set_inflight(WINDOW as u16);
        o.set_max_packet_size(64 << 20, 64 << 20);
        let (user, pass) = self.url.credentials();
        if user.is_some() || pass.is_some() {
            o.set_credentials(user.unwrap_or_default(), pass.unwrap_or_default());
        }
        let (client, mut connection) = rumqttc::Client::new(o, 2 * WINDOW);
        let url = self.url.redacted();
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(BrokerError::Unreachable { url, reason: format!("no answer within {:.1} s", timeout.as_secs_f64()) });
            }
            match connection.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(MqttConn { client, connection }),
                Ok(Ok(_)) => {}
                Ok(Err(ConnectionError::ConnectionRefused(
                    code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
                ))) => return Err(BrokerError::Auth { url, reason: format!("{code:?}") }),
                Ok(Err(e)) => return Err(BrokerError::Unreachable { url, reason: e.to_string() }),
                Err(_) => {
                    return Err(BrokerError::Unreachable { url, reason: format!("no answer within {:.1} s", timeout.as_secs_f64()) });
                }
            }
        }
    }
}

fn mqtt_loop(mut c: MqttConnector, conn: MqttConn, ctx: Ctx) {
    use rumqttc::{Event, Outgoing, Packet};
    let mut conn = Some(conn);
    // Handed to rumqttc, not yet confirmed: (pkid once written, record).
    let mut inflight: VecDeque<(Option<u16>, Arc<str>)> = VecDeque::new();
    // To send again first (after a reconnection).
    let mut resend: VecDeque<Arc<str>> = VecDeque::new();
    let qos1 = c.qos == rumqttc::QoS::AtLeastOnce;
    let mut closed = false;
    loop {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        if closed && inflight.is_empty() && resend.is_empty() {
            ctx.done.store(true, Ordering::SeqCst);
            break;
        }
        let Some(cn) = conn.as_mut() else {
            conn = reconnect(&mut c, &ctx);
            continue;
        };
        // Fill the window.
        while inflight.len() < WINDOW {
            let rec = match resend.pop_front() {
                Some(r) => {
                    ctx.stats.resent.fetch_add(1, Ordering::SeqCst);
                    r
                }
                None => match ctx.queue.pop(1, if inflight.is_empty() { Duration::from_millis(20) } else { Duration::ZERO }) {
                    None => {
                        closed = true;
                        break;
                    }
                    Some(mut v) if !v.is_empty() => v.remove(0),
                    Some(_) => break,
                },
            };
            if cn.client.try_publish(c.url.target.clone(), c.qos, false, rec.as_bytes().to_vec()).is_err() {
                resend.push_front(rec);
                break;
            }
            inflight.push_back((None, rec));
        }
        if inflight.is_empty() {
            continue;
        }
        match cn.connection.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if qos1 {
                    if let Some(e) = inflight.iter_mut().find(|e| e.0.is_none()) {
                        e.0 = Some(pkid);
                    }
                } else if inflight.pop_front().is_some() {
                    ctx.stats.published.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(i) = inflight.iter().position(|e| e.0 == Some(ack.pkid)) {
                    inflight.remove(i);
                    ctx.stats.published.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => {
                // The session is gone (clean session): everything unconfirmed is sent again.
                for (_, r) in inflight.drain(..).rev() {
                    resend.push_front(r);
                }
                conn = None;
            }
        }
    }
    if let Some(cn) = conn.as_mut() {
        let _ = cn.client.try_disconnect();
        let _ = cn.connection.recv_timeout(Duration::from_millis(50));
    }
    ctx.stats.unsent.store((inflight.len() + resend.len() + ctx.queue.len()) as u64, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = BrokerUrl::parse("mqtt://bob:s3cr%40t@example.org:1884/cams/{stream}/seg?qos=0&masks=false").unwrap();
        assert_eq!(u.scheme, Scheme::Mqtt);
        assert_eq!((u.host.as_str(), u.port), ("example.org", 1884));
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s3cr@t"));
        assert_eq!(u.target, "cams/{stream}/seg");
        assert_eq!((u.qos, u.masks), (Some(0), Some(false)));
        assert_eq!(u.redacted(), "mqtt://***@example.org:1884/cams/{stream}/seg");
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(BrokerUrl::parse(&u.to_url_string()).unwrap(), u);
        let r = BrokerUrl::parse("redis://localhost/segs?maxlen=10").unwrap();
        assert_eq!((r.port, r.maxlen, r.target.as_str()), (6379, Some(10), "segs"));
        assert_eq!((r.overflow, r.queue_size, r.connect_timeout, r.flush_timeout, r.wait_for_broker), (None, None, None, None, None));
    }

    #[test]
    fn delivery_options_in_the_url() {
        let u = BrokerUrl::parse("redis://h/k?overflow=drop-oldest&queue-size=50&connect-timeout=0.5&flush-timeout=30&wait=true").unwrap();
        assert_eq!(u.overflow, Some(Overflow::DropOldest));
        assert_eq!(u.queue_size, Some(50));
        assert_eq!(u.connect_timeout, Some(Duration::from_millis(500)));
        assert_eq!(u.flush_timeout, Some(Duration::from_secs(30)));
        assert_eq!(u.wait_for_broker, Some(true));
        assert_eq!(BrokerUrl::parse(&u.to_url_string()).unwrap(), u);
        for (bad, needle) in [
            ("mqtt://h/t?overflow=drop", "block or drop-oldest"),
            ("mqtt://h/t?queue-size=0", "queue-size=0"),
            ("mqtt://h/t?connect-timeout=-1", "connect-timeout=-1"),
            ("mqtt://h/t?flush-timeout=abc", "flush-timeout=abc"),
            ("mqtt://h/t?wait=maybe", "wait=maybe"),
        ] {
            let e = BrokerUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_bad_urls_without_leaking() {
        for bad in ["http://h/x", "mqtt://h:0/x", "mqtt://h", "redis://u:pw@h:99999/k", "mqtt://h/a/#", "mqtt://h/t?qos=2"] {
            let e = BrokerUrl::parse(bad).unwrap_err();
            assert!(matches!(e, BrokerError::InvalidUrl { .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
        assert!(matches!(BrokerUrl::parse("mqtts://h/t"), Err(BrokerError::TlsNotBuiltIn { .. })));
        assert_eq!(redact("redis://u:pw@h:1/k"), "redis://***@h:1/k");
    }
}
