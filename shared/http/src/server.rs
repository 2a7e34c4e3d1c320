//! Serving a router on a TCP listener with the limits every ENSPACE HTTP
//! listener keeps, so that idle, slow or numerous connections cannot starve
//! it:
//!
//! - a request's headers must arrive within `header_read_timeout` (10 s) of
//!   the connection opening or of its previous response (hyper's header read
//!   timer), so an idle keep-alive connection also ends then;
//! - a request body that sends nothing for `idle_timeout` (60 s) fails
//!   (tower-http's body timeout) and its connection closes;
//! - a connection reads at most [`READ_BUFFER_MAX`] (16 KiB, its head
//!   included) ahead of its handler;
//! - at most `max_connections` are open at once (and fewer if the process
//!   may not open that many files): at the cap the oldest connection that is
//!   not serving a request is closed to make room, and when every one is
//!   busy new connections wait in the listen backlog;
//! - on shutdown, connections that are not serving a request close at once,
//!   the others once their response is sent, and whatever is left after
//!   `shutdown_timeout` is cut off.
//!
//! HTTP/1.1 only: there is no TLS here (a proxy in front terminates it), and
//! HTTP/2 offers no idle limit to enforce.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// The limits of one listener; the defaults are the product's.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests in flight get this long to finish at shutdown; with the 5 s the
/// API node gives its buffered request records, a process exits within 15 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// The most a connection reads ahead of its handler: hyper reads a body
/// into its buffer and one chunk beyond before anyone asks (400 KiB by
/// default, so 4,096 connections posting bodies nobody reads held 3 GiB).
/// Request heads must fit in it too.
pub const READ_BUFFER_MAX: usize = 16 * 1024;

/// File descriptors kept out of the connection budget (the stores, NATS,
/// logs, the listener): a quarter of the limit, between 32 and 256.
fn reserved_files(limit: u64) -> u64 {
    (limit / 4).clamp(32, 256)
}

/// Raises the soft limit on open files as far as the connections need (and
/// the hard limit allows); returns how many connections fit under it.
pub fn fit_open_files(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = max_connections as u64 + reserved_files(u64::MAX);
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if raised > soft
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(raised),
                    maximum: limit.maximum,
                },
            )
            .is_ok()
        {
            soft = raised;
        }
    }
    let fits = usize::try_from(soft.saturating_sub(reserved_files(soft)))
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < max_connections {
        tracing::warn!(
            connections.max = max_connections,
            connections.fit = fits,
            open_files.limit = soft,
            "the open-file limit ({soft}) leaves room for {fits} connections, not {max_connections}: serving at most {fits} (raise `ulimit -n` for more)"
        );
    }
    fits.min(max_connections)
}

/// One open connection, as the accept loop and shutdown see it.
struct Slot {
    /// Requests being served on it (0 or 1 for HTTP/1.1).
    busy: Arc<AtomicUsize>,
    /// Closes it at once when notified.
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids grow with each accept).
#[derive(Default)]
struct Connections {
    slots: Mutex<BTreeMap<u64, Slot>>,
    /// Notified whenever a connection ends.
    ended: Notify,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the oldest connection that is not serving a request; false
    /// if every one is.
    fn close_oldest_idle(&self) -> bool {
        let slots = self.lock();
        match slots
            .values()
            .find(|slot| slot.busy.load(Ordering::SeqCst) == 0)
        {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes every connection that is not serving a request; with `all`,
    /// every connection.
    fn close_idle(&self, all: bool) {
        for slot in self.lock().values() {
            if all || slot.busy.load(Ordering::SeqCst) == 0 {
                slot.close.notify_one();
            }
        }
    }

    /// Resolves once fewer than `n` connections are open.
    async fn below(&self, n: usize) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.len() < n {
                return;
            }
            ended.await;
        }
    }
}

/// A response body that keeps its request counted as being served until
/// it has been written out (hyper drops it then).
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl axum::body::HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request as being served on its connection while alive.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether an accept error means the process ran out of file descriptors.
fn out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() || code == rustix::io::Errno::NFILE.raw_os_error())
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then shuts down as described in the module documentation.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = fit_open_files(limits.max_connections.max(1));
    let connections = Arc::new(Connections::default());
    let (draining_tx, draining) = watch::channel(false);
    let mut next_id = 0u64;
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // Room for the next connection: at the cap, the oldest idle one
        // goes; if every one is busy, wait (new ones queue in the backlog).
        if connections.len() >= cap {
            if !connections.close_oldest_idle() && warn_due(&mut last_warning) {
                tracing::warn!(
                    connections.max = cap,
                    "all {cap} connections are serving requests; new connections wait"
                );
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = connections.below(cap) => continue,
            }
        }
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if out_of_files(&e) {
                        connections.close_oldest_idle();
                        if warn_due(&mut last_warning) {
                            tracing::warn!(error = %e, connections.open = connections.len(),
                                "cannot accept connections: out of file descriptors");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
        };
        next_id += 1;
        spawn_connection(
            next_id,
            stream,
            remote,
            router.clone(),
            &limits,
            connections.clone(),
            draining.clone(),
        );
    }
    drop(listener);
    // Shutdown: idle connections go now, busy ones after their response.
    draining_tx.send_replace(true);
    connections.close_idle(false);
    let drained = tokio::time::timeout(limits.shutdown_timeout, connections.below(1)).await;
    if drained.is_err() {
        let left = connections.len();
        tracing::warn!(
            connections = left,
            "cutting off {left} connections still busy after {:?}",
            limits.shutdown_timeout
        );
        connections.close_idle(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.below(1)).await;
    }
    Ok(())
}

fn warn_due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
    if due {
        *last = Some(Instant::now());
    }
    due
}

fn spawn_connection(
    id: u64,
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: &ServerLimits,
    connections: Arc<Connections>,
    mut draining: watch::Receiver<bool>,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let close = Arc::new(Notify::new());
    connections.lock().insert(
        id,
        Slot {
            busy: busy.clone(),
            close: close.clone(),
        },
    );
    let idle_timeout = limits.idle_timeout;
    let header_read_timeout = limits.header_read_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::start(&busy);
        let mut req = req.map(|body| Body::new(TimeoutBody::new(idle_timeout, body)));
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move {
            let response = router.oneshot(req).await;
            response.map(|r| r.map(|body| Tracked { body, _busy: busy }))
        }
    });
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(READ_BUFFER_MAX);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut shutting_down = *draining.borrow();
        if shutting_down {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, client = %remote, "connection ended: {e}");
                    }
                    break;
                }
                () = close.notified() => break,
                changed = draining.changed(), if !shutting_down => {
                    if changed.is_err() || *draining.borrow() {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        connections.lock().remove(&id);
        connections.ended.notify_waiters();
    });
}
