//! Listeners and downstream connections: decode requests, route them through the shared core,
//! call the cluster, and write replies (in request order where the protocol needs it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, ErrorKind, ErrorReply, Message, MessageKind, NewCodec,
    RequestContext, Role,
};
use meta_protocol_runtime::mux::Reorder;
use meta_protocol_runtime::resilience::{AttemptFailure, RetryPolicy};
use meta_protocol_runtime::route::Router;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::cluster::{CallError, Cluster, ReplyRx, await_reply};
use crate::stats::Counter;
use crate::upstream::{UpstreamConn, UpstreamError};

/// Metadata a codec sets to `"true"` on a request that makes its connection stateful.
const PIN_KEY: &str = "pin";

/// What one listener runs with; replaced whole on reload.
pub(crate) struct ListenerRuntime {
    pub(crate) codec: Arc<dyn NewCodec>,
    pub(crate) router: Router,
    pub(crate) clusters: HashMap<String, Arc<Cluster>>,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    /// Requests per route, in route order.
    pub(crate) route_requests: Vec<Counter>,
}

/// Counters that survive reloads.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Downstream connections accepted.
    pub connections: Counter,
    /// Downstream connections refused (max_connections).
    pub refused: Counter,
    /// Downstream connections closed for lost framing.
    pub framing_errors: Counter,
    /// Requests decoded.
    pub requests: Counter,
    /// Error replies built locally.
    pub local_replies: Counter,
    /// Heartbeats answered locally.
    pub heartbeats: Counter,
}

/// A listener's current runtime, swappable on reload.
pub(crate) struct ListenerHandle {
    pub(crate) current: RwLock<Arc<ListenerRuntime>>,
    pub(crate) stats: ListenerStats,
}

impl ListenerHandle {
    pub(crate) fn current(&self) -> Arc<ListenerRuntime> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn replace(&self, rt: ListenerRuntime) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rt);
    }
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    handle: Arc<ListenerHandle>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    connections: Arc<tokio::sync::Notify>,
    open: Arc<std::sync::atomic::AtomicUsize>,
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = draining(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            handle.stats.refused.inc();
            drop(stream);
            continue;
        };
        handle.stats.connections.inc();
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        let connections = connections.clone();
        let open = open.clone();
        open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &handle, shutdown).await {
                tracing::debug!(%peer, error = %e, "downstream connection closed");
            }
            drop(permit);
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            connections.notify_waiters();
        });
    }
}

/// Returns once the proxy starts draining (or is gone).
async fn draining(shutdown: &mut watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is gone, which also means stop.
    let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
}

/// What became of one request.
// `Reply` is the common case; boxing it would add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Reply(Message),
    Local(ErrorKind, String),
    NoReply,
}

struct Done {
    seq: Option<u64>,
    ctx: RequestContext,
    route: Option<Arc<ListenerRuntime>>,
    route_index: Option<usize>,
    outcome: Outcome,
}

/// Serves one downstream connection.
async fn serve(
    stream: TcpStream,
    handle: &Arc<ListenerHandle>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let rt0 = handle.current();
    let mut codec = rt0.codec.new_codec(Role::Server);
    let in_order = codec.replies_in_order();
    let idle_timeout = rt0.idle_timeout;
    drop(rt0);
    let (mut rd, mut wr) = stream.into_split();
    // No buffer until the first bytes arrive: idle connections cost only their task.
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    // Created on the first request: an idle connection allocates no channel.
    let mut done_tx: Option<mpsc::UnboundedSender<Done>> = None;
    let mut done_rx: Option<mpsc::UnboundedReceiver<Done>> = None;
    let mut reorder: Reorder<Bytes> = Reorder::new();
    let mut in_flight = 0usize;
    let mut reading = true;
    let mut pinned: Option<Pinned> = None;
    let mut out_of_band: Option<mpsc::UnboundedReceiver<Message>> = None;
    loop {
        if !reading && in_flight == 0 {
            return Ok(());
        }
        let idle = in_flight == 0;
        tokio::select! {
            n = read_some(&mut rd, &mut rbuf), if reading => {
                match n {
                    Ok(0) => reading = false,
                    Ok(_) => {
                        let rt = handle.current();
                        loop {
                            match codec.decode(&mut rbuf) {
                                Ok(Some(msg)) => {
                                    handle.stats.requests.inc();
                                    let ordered = in_order || msg.correlation() == Correlation::Pipeline;
                                    match msg.kind() {
                                        MessageKind::Heartbeat => {
                                            if let Some(pong) = codec.heartbeat_reply(&msg) {
                                                handle.stats.heartbeats.inc();
                                                let seq = ordered.then(|| reorder.request());
                                                emit(&mut *codec, &mut reorder, &mut wbuf, seq, &pong)?;
                                            }
                                        }
                                        MessageKind::Request | MessageKind::Oneway => {
                                            let expects = msg.kind() == MessageKind::Request;
                                            let seq = (ordered && expects).then(|| reorder.request());
                                            in_flight += usize::from(expects);
                                            let ctx = msg.context();
                                            let tx = done_sender(&mut done_tx, &mut done_rx);
                                            let pins = msg.metadata().get_str(PIN_KEY) == Some("true");
                                            if pinned.is_none() && !pins {
                                                let rt = rt.clone();
                                                tokio::spawn(async move {
                                                    let (route_index, outcome) = handle_request(&rt, msg, expects).await;
                                                    if expects {
                                                        let _ = tx.send(Done { seq, ctx, route: Some(rt), route_index, outcome });
                                                    }
                                                });
                                                continue;
                                            }
                                            // Stateful session: one upstream connection, requests in order.
                                            let timeout = rt.request_timeout;
                                            let rt2 = rt.clone();
                                            match Box::pin(send_pinned(&rt, &mut pinned, &mut out_of_band, msg, expects)).await {
                                                Ok((route_index, rx)) => {
                                                    tokio::spawn(async move {
                                                        let outcome = match rx {
                                                            None => Outcome::NoReply,
                                                            Some(rx) => outcome_of(await_reply(rx, timeout).await.map(Some)),
                                                        };
                                                        if expects {
                                                            let _ = tx.send(Done { seq, ctx, route: Some(rt2), route_index: Some(route_index), outcome });
                                                        }
                                                    });
                                                }
                                                Err(local) => {
                                                    let (route_index, outcome) = local.into_done();
                                                    if expects {
                                                        let _ = tx.send(Done { seq, ctx, route: Some(rt2), route_index, outcome });
                                                    }
                                                }
                                            }
                                        }
                                        kind => {
                                            // Streams are not routed yet; say so rather than drop silently.
                                            tracing::warn!(?kind, "unsupported message kind from downstream");
                                            if kind == MessageKind::StreamInit {
                                                let seq = ordered.then(|| reorder.request());
                                                in_flight += 1;
                                                let _ = done_sender(&mut done_tx, &mut done_rx).send(Done { seq, ctx: msg.context(), route: None, route_index: None, outcome: Outcome::Local(ErrorKind::BadRequest, "streams are not supported by this proxy yet".into()) });
                                            }
                                        }
                                    }
                                }
                                Ok(None) => break,
                                Err(DecodeError::Message(bad)) => {
                                    let seq = (in_order || bad.context.correlation == Correlation::Pipeline).then(|| reorder.request());
                                    in_flight += 1;
                                    let _ = done_sender(&mut done_tx, &mut done_rx).send(Done { seq, ctx: bad.context.clone(), route: None, route_index: None, outcome: Outcome::Local(ErrorKind::BadRequest, bad.reason.to_string()) });
                                }
                                Err(e) => {
                                    handle.stats.framing_errors.inc();
                                    let _ = wr.write_all(&wbuf).await;
                                    return Err(format!("framing lost: {e}"));
                                }
                            }
                        }
                    }
                    Err(e) => return Err(format!("read failed: {e}")),
                }
            }
            done = recv_done(&mut done_rx), if in_flight > 0 => {
                let Some(mut done) = done else { return Err("request tasks ended".into()) };
                // Every outcome that is already there goes into the same write.
                loop {
                    in_flight -= 1;
                    if let Err(e) = finish(&mut *codec, &mut reorder, &mut wbuf, handle, done) {
                        let _ = wr.write_all(&wbuf).await;
                        return Err(e);
                    }
                    match done_rx.as_mut().map(mpsc::UnboundedReceiver::try_recv) {
                        Some(Ok(next)) => done = next,
                        _ => break,
                    }
                }
            }
            frame = next_out_of_band(&mut out_of_band), if out_of_band.is_some() => {
                match frame {
                    // Pushes and pub/sub messages of the pinned session, as they come.
                    Some(frame) => emit(&mut *codec, &mut reorder, &mut wbuf, None, &frame)?,
                    None => return Err("the pinned upstream connection closed".into()),
                }
            }
            () = tokio::time::sleep(idle_timeout), if idle && reading && pinned.is_none() => {
                return Err("idle timeout".into());
            }
            () = draining(&mut shutdown), if reading => {
                // Drain: stop taking requests, finish those in flight.
                reading = false;
            }
        }
        if !wbuf.is_empty() {
            wr.write_all(&wbuf)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            wbuf.clear();
        }
    }
}

/// Writes the reply for one finished request (the upstream's, or a local error reply) into
/// `wbuf`, in order when the protocol needs it. An error means the connection must close.
fn finish(
    codec: &mut dyn Codec,
    reorder: &mut Reorder<Bytes>,
    wbuf: &mut BytesMut,
    handle: &ListenerHandle,
    done: Done,
) -> Result<(), String> {
    let reply = match done.outcome {
        Outcome::Reply(mut reply) => {
            if let Correlation::Id(id) = done.ctx.correlation {
                reply.set_correlation(id);
            }
            if let (Some(rt), Some(i)) = (&done.route, done.route_index) {
                rt.router.routes()[i].mutate_response(reply.metadata_mut());
            }
            Some(reply)
        }
        Outcome::Local(kind, detail) => {
            handle.stats.local_replies.inc();
            tracing::debug!(?kind, %detail, "local error reply");
            let reply = codec.error_reply(&done.ctx, &ErrorReply::with_detail(kind, detail));
            // The protocol cannot express this error: close, as the contract says, rather
            // than leave the client waiting.
            Some(reply.ok_or("the codec has no reply for this error; closing")?)
        }
        Outcome::NoReply => None,
    };
    match reply {
        Some(reply) => emit(codec, reorder, wbuf, done.seq, &reply),
        // An ordered slot must still be released so that later replies are not held back.
        None => {
            if let Some(seq) = done.seq {
                reorder.skip(seq, |ready| wbuf.extend_from_slice(&ready));
            }
            Ok(())
        }
    }
}

/// The sender of request outcomes, creating the channel on first use.
fn done_sender(
    tx: &mut Option<mpsc::UnboundedSender<Done>>,
    rx: &mut Option<mpsc::UnboundedReceiver<Done>>,
) -> mpsc::UnboundedSender<Done> {
    tx.get_or_insert_with(|| {
        let (t, r) = mpsc::unbounded_channel();
        *rx = Some(r);
        t
    })
    .clone()
}

async fn recv_done(rx: &mut Option<mpsc::UnboundedReceiver<Done>>) -> Option<Done> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until the socket is readable, then reads into `buf`, making room only then.
async fn read_some(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    const READ_SIZE: usize = 8 * 1024;
    loop {
        rd.readable().await?;
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            buf.reserve(READ_SIZE);
        }
        match rd.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Encodes `msg` and queues it for writing, in order when `seq` is set: straight into
/// `wbuf` when nothing older is still waiting, otherwise held until the older replies leave.
fn emit(
    codec: &mut dyn Codec,
    reorder: &mut Reorder<Bytes>,
    wbuf: &mut BytesMut,
    seq: Option<u64>,
    msg: &Message,
) -> Result<(), String> {
    // A reply that cannot be written would leave the client waiting forever: close instead.
    let unencodable = |e| format!("a reply cannot be encoded for the downstream ({e}); closing");
    match seq {
        Some(seq) if !reorder.is_next(seq) => {
            let mut frame = BytesMut::new();
            codec.encode(msg, &mut frame).map_err(unencodable)?;
            reorder.complete(seq, frame.freeze(), |ready| wbuf.extend_from_slice(&ready));
        }
        _ => {
            let before = wbuf.len();
            if let Err(e) = codec.encode(msg, wbuf) {
                // Nothing of a half-written reply goes out with the replies before it.
                wbuf.truncate(before);
                return Err(unencodable(e));
            }
            if let Some(seq) = seq {
                reorder.skip(seq, |ready| wbuf.extend_from_slice(&ready));
            }
        }
    }
    Ok(())
}

/// Routes and forwards one request; returns the route used and the outcome.
/// The route and cluster for `msg`, with the route's request mutation applied; or the local
/// reply when there is none.
fn select(rt: &ListenerRuntime, msg: &mut Message) -> Result<Selected, Local> {
    let Some(index) = rt
        .router
        .routes()
        .iter()
        .position(|r| r.matches(msg.metadata()))
    else {
        return Err(Local {
            route: None,
            kind: ErrorKind::RouteNotFound,
            detail: "no route matches the request".into(),
        });
    };
    rt.route_requests[index].inc();
    let route = &rt.router.routes()[index];
    let cluster_name = route.cluster(fastrand::u64(..));
    let Some(cluster) = rt.clusters.get(cluster_name) else {
        return Err(Local {
            route: Some(index),
            kind: ErrorKind::ClusterNotFound,
            detail: format!("cluster `{cluster_name}` not found"),
        });
    };
    route.mutate_request(msg.metadata_mut());
    let hash = route.hash_key(msg.metadata());
    Ok((index, cluster.clone(), hash))
}

/// The route index, cluster and consistent-hash key chosen for a request.
type Selected = (usize, Arc<Cluster>, Option<u64>);

/// A request to be answered locally: the route it matched, the error and its text.
struct Local {
    route: Option<usize>,
    kind: ErrorKind,
    detail: String,
}

impl Local {
    fn from_call(route: Option<usize>, e: CallError) -> Self {
        let (kind, detail) = error_of(e);
        Local {
            route,
            kind,
            detail,
        }
    }

    fn into_done(self) -> (Option<usize>, Outcome) {
        (self.route, Outcome::Local(self.kind, self.detail))
    }
}

/// A downstream connection pinned to one upstream connection by a stateful request.
struct Pinned {
    cluster: Arc<Cluster>,
    conn: UpstreamConn,
    route_index: usize,
}

/// Sends `msg` on the connection's pinned upstream connection, pinning it first if needed.
/// Sends happen in request order; the returned future waits for the reply.
async fn send_pinned(
    rt: &Arc<ListenerRuntime>,
    pinned: &mut Option<Pinned>,
    out_of_band: &mut Option<mpsc::UnboundedReceiver<Message>>,
    mut msg: Message,
    expects: bool,
) -> Result<(usize, Option<ReplyRx>), Local> {
    if pinned.is_none() {
        let (route_index, cluster, hash) = select(rt, &mut msg)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = cluster
            .dedicated(hash, fastrand::u64(..), tx)
            .await
            .map_err(|e| Local::from_call(Some(route_index), e))?;
        tracing::debug!(cluster = %cluster.name, "downstream connection pinned");
        *pinned = Some(Pinned {
            cluster,
            conn,
            route_index,
        });
        *out_of_band = Some(rx);
    } else if let Some(p) = pinned.as_ref() {
        // The session stays on its server; the pinning route's mutation still applies.
        rt.route_requests[p.route_index].inc();
        if let Some(route) = rt.router.routes().get(p.route_index) {
            route.mutate_request(msg.metadata_mut());
        }
    }
    let Some(p) = pinned.as_ref() else {
        return Err(Local {
            route: None,
            kind: ErrorKind::UpstreamFailure,
            detail: "no pinned upstream connection".into(),
        });
    };
    let rx = p
        .cluster
        .send_on(&p.conn, msg, expects)
        .await
        .map_err(|e| Local::from_call(Some(p.route_index), e))?;
    Ok((p.route_index, rx))
}

async fn next_out_of_band(rx: &mut Option<mpsc::UnboundedReceiver<Message>>) -> Option<Message> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn handle_request(
    rt: &ListenerRuntime,
    mut msg: Message,
    expects: bool,
) -> (Option<usize>, Outcome) {
    let (index, cluster, hash) = match select(rt, &mut msg) {
        Ok(s) => s,
        Err(local) => return local.into_done(),
    };
    let route = &rt.router.routes()[index];
    for mirror in route.mirrors(fastrand::u64(..)) {
        if let Some(target) = rt.clusters.get(mirror) {
            let copy = msg.clone();
            let target = target.clone();
            let timeout = rt.request_timeout;
            // Fire and forget: the mirror's reply (or failure) is read and dropped.
            tokio::spawn(async move {
                let _ = target
                    .call(copy, expects, hash, fastrand::u64(..), timeout)
                    .await;
            });
        }
    }
    let mut attempts = 0u32;
    let mut _retry = None;
    loop {
        attempts += 1;
        let result = cluster
            .call(
                msg.clone(),
                expects,
                hash,
                fastrand::u64(..),
                rt.request_timeout,
            )
            .await;
        let failure = match &result {
            Ok(Some(reply)) => match reply.metadata().get_str("status") {
                Some(s) if rt.retry.on_statuses.iter().any(|x| x == s) => AttemptFailure::Status(s),
                _ => return (Some(index), outcome_of(result)),
            },
            Ok(None) => return (Some(index), Outcome::NoReply),
            Err(CallError::Timeout(_)) => AttemptFailure::Timeout,
            Err(CallError::Upstream(UpstreamError::Connect(..))) => AttemptFailure::ConnectFailure,
            Err(_) => return (Some(index), outcome_of(result)),
        };
        match cluster.retry_permit(&rt.retry, failure, attempts) {
            Some(permit) => {
                tracing::debug!(cluster = %cluster.name, attempts, ?failure, "retrying");
                _retry = Some(permit);
            }
            None => return (Some(index), outcome_of(result)),
        }
    }
}

fn outcome_of(result: Result<Option<Message>, CallError>) -> Outcome {
    match result {
        Ok(Some(reply)) => Outcome::Reply(reply),
        Ok(None) => Outcome::NoReply,
        Err(e) => {
            let (kind, detail) = error_of(e);
            Outcome::Local(kind, detail)
        }
    }
}

/// The error reply a failed call gets.
fn error_of(e: CallError) -> (ErrorKind, String) {
    let kind = match &e {
        CallError::Overflow(_) => ErrorKind::OverLimit,
        CallError::NoHealthy => ErrorKind::NoHealthyUpstream,
        CallError::Timeout(_) => ErrorKind::Timeout,
        CallError::Upstream(UpstreamError::Encode(_)) => ErrorKind::BadRequest,
        CallError::Upstream(_) => ErrorKind::UpstreamFailure,
    };
    (kind, e.to_string())
}
