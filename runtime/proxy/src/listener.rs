//! Listeners and downstream connections: decode requests, route them through the shared core,
//! call the cluster, and write replies (in request order where the protocol needs it).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, ErrorKind, ErrorReply, Message, MessageKind, NewCodec,
    PIN_KEY, RequestContext, Role,
};
use meta_protocol_runtime::mux::Reorder;
use meta_protocol_runtime::ratelimit::LocalRateLimit;
use meta_protocol_runtime::resilience::{AttemptFailure, RetryPolicy};
use meta_protocol_runtime::route::Router;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::cluster::{
    Attempt, CallError, Cluster, Dispatch, Permit, ReplyRx, await_reply, deadline_after,
};
use crate::stats::Counter;
use crate::upstream::{Completion, ReplyTo, UpstreamConn, UpstreamError};

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
    /// The listener's local rate limits, in filter order (kept across route updates).
    pub(crate) rate_limits: Arc<Vec<std::sync::Mutex<LocalRateLimit>>>,
}

impl ListenerRuntime {
    /// Passes a request through the listener's filters; the local reply when one refuses it.
    fn admit(&self, msg: &Message, stats: &ListenerStats) -> Result<(), Local> {
        if self.rate_limits.is_empty() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        for (i, limit) in self.rate_limits.iter().enumerate() {
            let mut limit = limit.lock().unwrap_or_else(|p| p.into_inner());
            if !limit.allow(msg.metadata(), now) {
                stats.rate_limited.inc();
                return Err(Local {
                    route: None,
                    kind: ErrorKind::OverLimit,
                    detail: format!("local rate limit (filters[{i}]) exceeded"),
                });
            }
        }
        Ok(())
    }
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
    /// Requests refused by a local rate limit.
    pub rate_limited: Counter,
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
        // Counted down even if the connection's task panics.
        let open = OpenConnection {
            open,
            connections,
            _permit: permit,
        };
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &handle, shutdown).await {
                tracing::debug!(%peer, error = %e, "downstream connection closed");
            }
            drop(open);
        });
    }
}

/// One open downstream connection, counted until dropped (the drain waits for the count).
struct OpenConnection {
    open: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<tokio::sync::Notify>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.connections.notify_waiters();
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

/// A request finished on the waiting path (a task of its own): pinned sessions, requests
/// whose connection must be opened first, retries.
struct Done {
    seq: Option<u64>,
    ctx: RequestContext,
    route: Option<Arc<ListenerRuntime>>,
    route_index: Option<usize>,
    outcome: Outcome,
}

/// A request sent on the fast path, waiting in its connection's completion queue.
struct Pending {
    seq: Option<u64>,
    ctx: RequestContext,
    rt: Arc<ListenerRuntime>,
    route_index: usize,
    hash: Option<u64>,
    deadline: Instant,
    /// The request again, kept only when the listener may retry it.
    /// (Boxed: the table moves entries, and most listeners do not retry.)
    retry_copy: Option<Box<Message>>,
    cluster: Arc<Cluster>,
    /// The endpoint of the attempt in flight, until it is ended.
    endpoint: Option<usize>,
}

impl Pending {
    fn end(&mut self, how: Attempt) {
        if let Some(endpoint) = self.endpoint.take() {
            self.cluster.end(endpoint, how);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The downstream connection went away with the request in flight.
        self.end(Attempt::Abandoned);
    }
}

/// Something with a deadline, kept in a [`PendingTable`].
trait Deadline {
    fn deadline(&self) -> Instant;
}

impl Deadline for Pending {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Requests in flight on the fast path, by token (slot index and a generation, so that a
/// late reply to a slot reused since is recognised and dropped). As large as the most
/// requests the connection had in flight at once.
struct PendingTable<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Default for PendingTable<T> {
    fn default() -> Self {
        PendingTable {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T: Deadline> PendingTable<T> {
    fn insert(&mut self, p: T) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(p);
        (u64::from(slot.0) << 32) | u64::from(index)
    }

    fn remove(&mut self, token: u64) -> Option<T> {
        let index = (token & u64::from(u32::MAX)) as usize;
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.0) != token >> 32 {
            return None;
        }
        let p = slot.1.take()?;
        self.free.push(index as u32);
        Some(p)
    }

    fn get_mut(&mut self, token: u64) -> Option<&mut T> {
        let slot = self.slots.get_mut((token & u64::from(u32::MAX)) as usize)?;
        if u64::from(slot.0) != token >> 32 {
            return None;
        }
        slot.1.as_mut()
    }

    /// The tokens of the requests whose deadline is `now` or earlier.
    fn expired(&self, now: Instant) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (generation, p))| {
                let due = p.as_ref()?.deadline() <= now;
                due.then_some((u64::from(*generation) << 32) | i as u64)
            })
            .collect()
    }

    /// The earliest deadline of the requests in flight.
    fn earliest(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|(_, p)| p.as_ref().map(Deadline::deadline))
            .min()
    }
}

/// `d` after `t`, or a far-off instant when that is beyond what the clock can hold (a
/// configured "never").
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// One downstream connection's state outside the socket.
struct Downstream<'h> {
    handle: &'h Arc<ListenerHandle>,
    codec: Box<dyn Codec>,
    in_order: bool,
    wbuf: BytesMut,
    reorder: Reorder<Bytes>,
    /// Requests that still owe the client a reply.
    in_flight: usize,
    /// Created on the first request: an idle connection allocates no channel.
    done_tx: Option<mpsc::UnboundedSender<Done>>,
    done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    completion_tx: Option<mpsc::UnboundedSender<Completion>>,
    completion_rx: Option<mpsc::UnboundedReceiver<Completion>>,
    pending: PendingTable<Pending>,
    /// Fires at the earliest deadline of the pending requests (or a little before).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the connection last showed activity (bytes from the client, its last reply, a
    /// frame of its pinned session), and a timer that fires no earlier than the idle timeout
    /// after that (reset only when it fires: no timer work per request).
    last_activity: Instant,
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    pinned: Option<Pinned>,
    out_of_band: Option<mpsc::UnboundedReceiver<Message>>,
}

/// Serves one downstream connection.
async fn serve(
    stream: TcpStream,
    handle: &Arc<ListenerHandle>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let rt0 = handle.current();
    let codec = rt0.codec.new_codec(Role::Server);
    let idle_timeout = rt0.idle_timeout;
    drop(rt0);
    let (mut rd, mut wr) = stream.into_split();
    // No buffer until the first bytes arrive: idle connections cost only their task.
    let mut rbuf = BytesMut::new();
    let mut d = Downstream {
        handle,
        in_order: codec.replies_in_order(),
        codec,
        wbuf: BytesMut::new(),
        reorder: Reorder::new(),
        in_flight: 0,
        done_tx: None,
        done_rx: None,
        completion_tx: None,
        completion_rx: None,
        pending: PendingTable::default(),
        timer: None,
        last_activity: Instant::now(),
        idle_timer: None,
        pinned: None,
        out_of_band: None,
    };
    let mut reading = true;
    loop {
        if !reading && d.in_flight == 0 {
            return Ok(());
        }
        if d.idle_timer.is_none() {
            d.idle_timer = Some(Box::pin(tokio::time::sleep_until(
                d.last_activity + idle_timeout,
            )));
        }
        let step = tokio::select! {
            n = read_some(&mut rd, &mut rbuf), if reading => match n {
                Ok(0) => {
                    reading = false;
                    Ok(())
                }
                Ok(_) => d.on_bytes(&mut rbuf).await,
                Err(e) => return Err(format!("read failed: {e}")),
            },
            c = recv(&mut d.completion_rx) => match c {
                Some(c) => {
                    let mut r = d.on_completion(c);
                    // Every completion already queued goes into the same write.
                    while let (Ok(()), Some(Ok(c))) = (&r, d.completion_rx.as_mut().map(mpsc::UnboundedReceiver::try_recv)) {
                        r = d.on_completion(c);
                    }
                    r
                }
                None => Err("the completion queue closed".to_owned()),
            },
            done = recv(&mut d.done_rx) => match done {
                Some(done) => {
                    let mut r = d.on_done(done);
                    while let (Ok(()), Some(Ok(done))) = (&r, d.done_rx.as_mut().map(mpsc::UnboundedReceiver::try_recv)) {
                        r = d.on_done(done);
                    }
                    r
                }
                None => Err("request tasks ended".to_owned()),
            },
            () = fire(&mut d.timer) => d.on_timer(),
            frame = recv(&mut d.out_of_band) => match frame {
                // Pushes, pub/sub messages and stream frames of the pinned session, as they
                // come; they count as activity for the idle timeout.
                Some(frame) => {
                    d.last_activity = Instant::now();
                    emit(&mut *d.codec, &mut d.reorder, &mut d.wbuf, None, &frame)
                }
                None => Err("the pinned upstream connection closed".to_owned()),
            },
            () = fire(&mut d.idle_timer), if reading => {
                let now = Instant::now();
                let quiet_until = later(d.last_activity, idle_timeout);
                if d.in_flight == 0 && quiet_until <= now {
                    return Err("idle timeout".into());
                }
                // Busy, or bytes came since it was armed: look again later.
                let next = quiet_until.max(later(now, (idle_timeout / 8).max(Duration::from_millis(1))));
                d.idle_timer = Some(Box::pin(tokio::time::sleep_until(next)));
                Ok(())
            }
            () = draining(&mut shutdown), if reading => {
                // Drain: stop taking requests, finish those in flight.
                reading = false;
                Ok(())
            }
        };
        // Whatever is ready goes out before the connection closes on an error.
        if !d.wbuf.is_empty() {
            let written = wr.write_all(&d.wbuf).await;
            d.wbuf.clear();
            written.map_err(|e| format!("write failed: {e}"))?;
        }
        step?;
    }
}

impl Downstream<'_> {
    /// Decodes and dispatches every whole frame in `rbuf`.
    async fn on_bytes(&mut self, rbuf: &mut BytesMut) -> Result<(), String> {
        let rt = self.handle.current();
        self.last_activity = Instant::now();
        loop {
            match self.codec.decode(rbuf) {
                Ok(Some(msg)) => {
                    self.handle.stats.requests.inc();
                    self.on_message(&rt, msg).await?;
                }
                Ok(None) => return Ok(()),
                Err(DecodeError::Message(bad)) => {
                    let ordered = self.in_order || bad.context.correlation == Correlation::Pipeline;
                    let seq = ordered.then(|| self.reorder.request());
                    self.in_flight += 1;
                    let done = Done {
                        seq,
                        ctx: bad.context.clone(),
                        route: None,
                        route_index: None,
                        outcome: Outcome::Local(ErrorKind::BadRequest, bad.reason.to_string()),
                    };
                    self.on_done(done)?;
                }
                Err(e) => {
                    self.handle.stats.framing_errors.inc();
                    return Err(format!("framing lost: {e}"));
                }
            }
        }
    }

    async fn on_message(&mut self, rt: &Arc<ListenerRuntime>, msg: Message) -> Result<(), String> {
        let ordered = self.in_order || msg.correlation() == Correlation::Pipeline;
        match msg.kind() {
            MessageKind::Heartbeat => {
                if let Some(pong) = self.codec.heartbeat_reply(&msg) {
                    self.handle.stats.heartbeats.inc();
                    let seq = ordered.then(|| self.reorder.request());
                    emit(
                        &mut *self.codec,
                        &mut self.reorder,
                        &mut self.wbuf,
                        seq,
                        &pong,
                    )?;
                }
                Ok(())
            }
            MessageKind::Request | MessageKind::Oneway => {
                let expects = msg.kind() == MessageKind::Request;
                let seq = (ordered && expects).then(|| self.reorder.request());
                self.in_flight += usize::from(expects);
                if let Err(local) = rt.admit(&msg, &self.handle.stats) {
                    let (route_index, outcome) = local.into_done();
                    let ctx = msg.context();
                    return self.finish_local(expects, seq, ctx, rt, route_index, outcome);
                }
                let pins = msg.metadata().get_str(PIN_KEY) == Some("true");
                if self.pinned.is_some() || pins {
                    self.send_pinned(rt, msg, expects, seq).await
                } else {
                    self.dispatch(rt, msg, expects, seq)
                }
            }
            MessageKind::StreamInit | MessageKind::StreamData | MessageKind::StreamClose => {
                // Stream frames get no reply of their own: they go, in order, on the pinned
                // upstream connection (opened now when the stream's first frame arrives
                // without a call having pinned the connection); the upstream's stream frames
                // come back out of band.
                self.send_pinned(rt, msg, false, None).await
            }
            kind => {
                tracing::warn!(?kind, "a reply kind from the downstream is dropped");
                Ok(())
            }
        }
    }

    /// Routes a request and sends it without a task when its connection is ready; otherwise
    /// hands it to a task on the waiting path.
    fn dispatch(
        &mut self,
        rt: &Arc<ListenerRuntime>,
        mut msg: Message,
        expects: bool,
        seq: Option<u64>,
    ) -> Result<(), String> {
        let ctx = msg.context();
        let (index, cluster, hash) = match select(rt, &mut msg) {
            Ok(s) => s,
            Err(local) => {
                let (route_index, outcome) = local.into_done();
                return self.finish_local(expects, seq, ctx, rt, route_index, outcome);
            }
        };
        mirror(rt, index, &msg, expects, hash);
        // A request that expects a reply waits in the table, its reply coming to this
        // connection's completion queue under its token.
        let (token, reply) = if expects {
            let tx = self.completion_sender();
            let token = self.pending.insert(Pending {
                seq,
                ctx: ctx.clone(),
                rt: rt.clone(),
                route_index: index,
                hash,
                deadline: later(self.last_activity, rt.request_timeout),
                retry_copy: (rt.retry.max_retries > 0).then(|| Box::new(msg.clone())),
                cluster: cluster.clone(),
                endpoint: None,
            });
            (Some(token), Some(ReplyTo::Queue { tx, token }))
        } else {
            (None, None)
        };
        match cluster.try_dispatch(msg, hash, fastrand::u64(..), reply) {
            Dispatch::Sent(endpoint) => {
                if let Some(p) = token.and_then(|t| self.pending.get_mut(t)) {
                    p.endpoint = Some(endpoint);
                    let deadline = p.deadline;
                    self.arm_timer(deadline);
                }
                Ok(())
            }
            Dispatch::Failed(e) => {
                if let Some(t) = token {
                    self.pending.remove(t);
                }
                let (kind, detail) = error_of(e);
                let outcome = Outcome::Local(kind, detail);
                self.finish_local(expects, seq, ctx, rt, Some(index), outcome)
            }
            Dispatch::Slow(msg, endpoint) => {
                if let Some(t) = token {
                    self.pending.remove(t);
                }
                let waiting = rt.clone();
                let outcome = async move {
                    let picked = Some(endpoint);
                    attempts(&waiting, &cluster, msg, expects, hash, picked, 0, None).await
                };
                self.answer_later(expects, seq, ctx, rt, Some(index), outcome);
                Ok(())
            }
        }
    }

    /// Waits for `outcome` in a task of its own (the waiting path), then answers the request
    /// through the connection's queue of finished requests (nothing for one-way requests).
    fn answer_later(
        &mut self,
        expects: bool,
        seq: Option<u64>,
        ctx: RequestContext,
        rt: &Arc<ListenerRuntime>,
        route_index: Option<usize>,
        outcome: impl Future<Output = Outcome> + Send + 'static,
    ) {
        let tx = self.done_sender();
        let route = Some(rt.clone());
        tokio::spawn(async move {
            let outcome = outcome.await;
            if expects {
                let _ = tx.send(Done {
                    seq,
                    ctx,
                    route,
                    route_index,
                    outcome,
                });
            }
        });
    }

    /// Answers a request that never left the proxy.
    fn finish_local(
        &mut self,
        expects: bool,
        seq: Option<u64>,
        ctx: RequestContext,
        rt: &Arc<ListenerRuntime>,
        route_index: Option<usize>,
        outcome: Outcome,
    ) -> Result<(), String> {
        if !expects {
            return Ok(());
        }
        let route = Some(rt.clone());
        self.on_done(Done {
            seq,
            ctx,
            route,
            route_index,
            outcome,
        })
    }

    /// A reply (or failure) from an upstream connection for a fast-path request.
    fn on_completion(&mut self, c: Completion) -> Result<(), String> {
        // Unknown tokens are late replies to requests that timed out.
        let Some(mut p) = self.pending.remove(c.token) else {
            return Ok(());
        };
        let result = c.result.map(Some).map_err(CallError::from);
        p.end(Attempt::of(&result));
        self.after_attempt(p, result)
    }

    /// Times out the fast-path requests whose deadline has passed.
    fn on_timer(&mut self) -> Result<(), String> {
        self.timer = None;
        let mut result = Ok(());
        for token in self.pending.expired(Instant::now()) {
            if let Some(mut p) = self.pending.remove(token) {
                p.end(Attempt::TimedOut);
                let timeout = p.rt.request_timeout;
                result = result.and(self.after_attempt(p, Err(CallError::Timeout(timeout))));
            }
        }
        if let Some(next) = self.pending.earliest() {
            self.arm_timer(next);
        }
        result
    }

    /// Answers a finished fast-path attempt, or retries it on the waiting path when the
    /// listener's retry policy allows.
    fn after_attempt(
        &mut self,
        mut p: Pending,
        result: Result<Option<Message>, CallError>,
    ) -> Result<(), String> {
        let route = Some(p.rt.clone());
        let route_index = Some(p.route_index);
        let (seq, ctx) = (p.seq, p.ctx.clone());
        match p.retry_copy.take() {
            Some(msg) if retryable(&p.rt, &result).is_some() => {
                let (rt, cluster, hash) = (p.rt.clone(), p.cluster.clone(), p.hash);
                let outcome = async move { retry_after(&rt, &cluster, *msg, hash, result).await };
                self.answer_later(true, seq, ctx, &p.rt, route_index, outcome);
                Ok(())
            }
            _ => {
                let outcome = outcome_of(result);
                self.on_done(Done {
                    seq,
                    ctx,
                    route,
                    route_index,
                    outcome,
                })
            }
        }
    }

    /// Writes the reply for one finished request.
    fn on_done(&mut self, done: Done) -> Result<(), String> {
        self.in_flight -= 1;
        if self.in_flight == 0 {
            // Idle from now on: one clock read per quiet period, not per request.
            self.last_activity = Instant::now();
        }
        finish(
            &mut *self.codec,
            &mut self.reorder,
            &mut self.wbuf,
            self.handle,
            done,
        )
    }

    /// Makes the timer fire no later than `deadline`.
    fn arm_timer(&mut self, deadline: Instant) {
        match &mut self.timer {
            Some(t) if t.deadline() <= deadline => {}
            Some(t) => t.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn completion_sender(&mut self) -> mpsc::UnboundedSender<Completion> {
        self.completion_tx
            .get_or_insert_with(|| {
                let (t, r) = mpsc::unbounded_channel();
                self.completion_rx = Some(r);
                t
            })
            .clone()
    }

    fn done_sender(&mut self) -> mpsc::UnboundedSender<Done> {
        self.done_tx
            .get_or_insert_with(|| {
                let (t, r) = mpsc::unbounded_channel();
                self.done_rx = Some(r);
                t
            })
            .clone()
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
                // The runtime may have changed since (reload, RDS): its routes may be fewer.
                if let Some(route) = rt.router.routes().get(i) {
                    route.mutate_response(reply.metadata_mut());
                }
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

async fn recv<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn fire(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Waits until the socket is readable, then reads into `buf`, making room only then (an
/// idle connection holds no buffer). The read goes through `AsyncRead`, which treats a read
/// that did not fill the buffer as having drained the socket: no extra `recv` per request
/// only to learn that nothing more is there.
async fn read_some(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    const READ_SIZE: usize = 8 * 1024;
    rd.readable().await?;
    if buf.capacity() - buf.len() < READ_SIZE / 2 {
        buf.reserve(READ_SIZE);
    }
    tokio::io::AsyncReadExt::read_buf(rd, buf).await
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

impl Downstream<'_> {
    /// Sends `msg` on the connection's pinned upstream connection, pinning it first if
    /// needed. Sends happen in request order; a task waits for the reply.
    async fn send_pinned(
        &mut self,
        rt: &Arc<ListenerRuntime>,
        msg: Message,
        expects: bool,
        seq: Option<u64>,
    ) -> Result<(), String> {
        let ctx = msg.context();
        let sent = Box::pin(pin_and_send(
            rt,
            &mut self.pinned,
            &mut self.out_of_band,
            msg,
            expects,
        ))
        .await;
        match sent {
            Ok((route_index, rx)) => {
                let timeout = rt.request_timeout;
                let outcome = async move {
                    match rx {
                        None => Outcome::NoReply,
                        Some(rx) => outcome_of(await_reply(rx, timeout).await.map(Some)),
                    }
                };
                self.answer_later(expects, seq, ctx, rt, Some(route_index), outcome);
                Ok(())
            }
            Err(local) => {
                let (route_index, outcome) = local.into_done();
                self.finish_local(expects, seq, ctx, rt, route_index, outcome)
            }
        }
    }
}

/// Pins the downstream connection to a dedicated upstream connection on its first stateful
/// request, then sends every request there.
async fn pin_and_send(
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
        if let Some(count) = rt.route_requests.get(p.route_index) {
            count.inc();
        }
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
    let timeout = rt.request_timeout;
    let sent = tokio::time::timeout_at(
        deadline_after(timeout),
        p.cluster.send_on(&p.conn, msg, expects),
    )
    .await
    .unwrap_or(Err(CallError::Timeout(timeout)));
    let rx = sent.map_err(|e| Local::from_call(Some(p.route_index), e))?;
    Ok((p.route_index, rx))
}

/// Copies the request to the route's mirror clusters, fire and forget: a mirror's reply or
/// failure never reaches the client and never delays it.
fn mirror(rt: &ListenerRuntime, index: usize, msg: &Message, expects: bool, hash: Option<u64>) {
    let route = &rt.router.routes()[index];
    for target in route.mirrors(fastrand::u64(..)) {
        if let Some(target) = rt.clusters.get(target) {
            let copy = msg.clone();
            let target = target.clone();
            let timeout = rt.request_timeout;
            tokio::spawn(async move {
                let _ = target
                    .call(copy, expects, hash, fastrand::u64(..), timeout)
                    .await;
            });
        }
    }
}

/// Why `result` may be retried under the listener's policy, if the policy retries it at all
/// (the budget is checked when the retry is attempted).
fn retryable<'r>(
    rt: &ListenerRuntime,
    result: &'r Result<Option<Message>, CallError>,
) -> Option<AttemptFailure<'r>> {
    let failure = match result {
        Ok(Some(reply)) => return rt.retry.reply_failure(reply.metadata()),
        Ok(None) => return None,
        Err(CallError::Timeout(_)) => AttemptFailure::Timeout,
        Err(CallError::Upstream(UpstreamError::Connect(..))) => AttemptFailure::ConnectFailure,
        Err(_) => return None,
    };
    rt.retry.retries(failure).then_some(failure)
}

/// Calls the cluster until an attempt succeeds or the retry policy (and its budget) allows
/// no more; `made` attempts were made before. The first attempt goes to `picked` when an
/// endpoint was chosen already.
#[allow(clippy::too_many_arguments)]
async fn attempts(
    rt: &ListenerRuntime,
    cluster: &Cluster,
    msg: Message,
    expects: bool,
    hash: Option<u64>,
    mut picked: Option<usize>,
    mut made: u32,
    mut _retry: Option<Permit<'_>>,
) -> Outcome {
    loop {
        made += 1;
        let timeout = rt.request_timeout;
        let result = match picked.take() {
            Some(i) => cluster.call_picked(i, msg.clone(), expects, timeout).await,
            None => {
                let random = fastrand::u64(..);
                cluster
                    .call(msg.clone(), expects, hash, random, timeout)
                    .await
            }
        };
        let Some(failure) = retryable(rt, &result) else {
            return outcome_of(result);
        };
        match cluster.retry_permit(&rt.retry, failure, made) {
            Some(permit) => {
                tracing::debug!(cluster = %cluster.name, attempts = made, ?failure, "retrying");
                _retry = Some(permit);
            }
            None => return outcome_of(result),
        }
    }
}

/// Retries a request whose first attempt (on the fast path) failed with `first`, if the
/// retry budget allows; otherwise answers with `first`.
async fn retry_after(
    rt: &ListenerRuntime,
    cluster: &Cluster,
    msg: Message,
    hash: Option<u64>,
    first: Result<Option<Message>, CallError>,
) -> Outcome {
    let permit = match retryable(rt, &first) {
        Some(failure) => cluster.retry_permit(&rt.retry, failure, 1),
        None => None,
    };
    match permit {
        None => outcome_of(first),
        Some(permit) => attempts(rt, cluster, msg, true, hash, None, 1, Some(permit)).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Due(Instant);

    impl Deadline for Due {
        fn deadline(&self) -> Instant {
            self.0
        }
    }

    #[test]
    fn tokens_are_not_reused_for_late_replies() {
        let now = Instant::now();
        let mut t = PendingTable::default();
        let a = t.insert(Due(now));
        assert!(t.remove(a).is_some());
        let b = t.insert(Due(now));
        assert_ne!(a, b, "the slot is reused under a new generation");
        assert!(
            t.remove(a).is_none(),
            "a late reply to the old request is dropped"
        );
        assert!(t.remove(b).is_some());
        assert!(t.remove(b).is_none(), "removed once");
        assert_eq!(t.free.len(), 1, "the slot is free once, not twice");
    }

    #[test]
    fn expired_requests_are_found_whatever_order_they_were_sent_in() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut t = PendingTable::default();
        // A request with a long timeout, then (after a reload) shorter ones behind it.
        let long = t.insert(Due(now + ms(30_000)));
        let short = t.insert(Due(now + ms(1_000)));
        let shorter = t.insert(Due(now + ms(500)));
        assert_eq!(t.earliest(), Some(now + ms(500)));
        let mut due = t.expired(now + ms(1_000));
        due.sort_unstable();
        let mut want = vec![short, shorter];
        want.sort_unstable();
        assert_eq!(due, want);
        for tok in due {
            assert!(t.remove(tok).is_some());
        }
        assert_eq!(t.earliest(), Some(now + ms(30_000)));
        assert!(t.expired(now + ms(29_999)).is_empty());
        assert!(t.remove(long).is_some());
        assert_eq!(t.earliest(), None);
        // A thousand requests answered in order leave no trace but free slots.
        for i in 0..1000u64 {
            let tok = t.insert(Due(now + ms(i)));
            assert!(t.remove(tok).is_some());
        }
        assert!(t.slots.len() <= 3, "slots are reused: {}", t.slots.len());
    }

    #[test]
    fn durations_beyond_the_clock_mean_never() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > later(now, Duration::from_secs(3600)));
    }
}
