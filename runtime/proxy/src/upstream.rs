//! Upstream connections: one task per connection owns the socket and a client-role codec,
//! writes requests as they come, and hands each reply to whoever sent the request.
//!
//! In multiplexed mode requests from many downstream connections share the connection: each
//! gets a fresh id from [`IdMap`] (restored by the downstream side), or, for protocols
//! without ids, a place in a FIFO queue (replies come back in order). In exclusive mode the
//! connection carries one request at a time and ids pass through unchanged.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol_core::{Codec, Correlation, Message, MessageKind, NewCodec, Role};
use meta_protocol_runtime::mux::IdMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Why an upstream exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be made in time, or was refused.
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, String),
    /// The connection failed or closed before the reply came.
    #[error("upstream connection failed: {0}")]
    Reset(String),
    /// The request could not be encoded for the upstream.
    #[error("request cannot be encoded: {0}")]
    Encode(String),
    /// Every id of the protocol is in flight on the connection.
    #[error("no free request id on the upstream connection")]
    IdsExhausted,
}

/// A request handed to a connection task.
pub(crate) struct Outbound {
    pub(crate) msg: Message,
    /// `None` for requests that get no reply (one-way).
    pub(crate) reply: Option<ReplyTo>,
}

/// Where the reply to a request goes.
pub(crate) enum ReplyTo {
    /// A caller waiting for this one reply.
    Once(oneshot::Sender<Result<Message, UpstreamError>>),
    /// The completion queue of the downstream connection that sent the request, with the
    /// request's token there: no channel per request.
    Queue {
        tx: mpsc::UnboundedSender<Completion>,
        token: u64,
    },
}

/// A reply (or failure) for the request with `token`, on a downstream connection's queue.
pub(crate) struct Completion {
    pub(crate) token: u64,
    pub(crate) result: Result<Message, UpstreamError>,
}

impl ReplyTo {
    /// Delivers the result; a receiver that is gone (the downstream closed, or stopped
    /// waiting) is no error.
    fn send(self, result: Result<Message, UpstreamError>) {
        match self {
            ReplyTo::Once(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Queue { tx, token } => {
                let _ = tx.send(Completion { token, result });
            }
        }
    }
}

/// A handle to a running upstream connection.
#[derive(Clone)]
pub(crate) struct UpstreamConn {
    tx: mpsc::Sender<Outbound>,
}

impl UpstreamConn {
    /// Connects to `addr` and starts the connection's task.
    pub(crate) async fn connect(
        addr: SocketAddr,
        codec: &Arc<dyn NewCodec>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        multiplexed: bool,
        open_connections: Arc<AtomicUsize>,
        out_of_band: Option<mpsc::UnboundedSender<Message>>,
    ) -> Result<Self, UpstreamError> {
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                UpstreamError::Connect(addr, format!("timed out after {connect_timeout:?}"))
            })?
            .map_err(|e| UpstreamError::Connect(addr, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(1024);
        let task = ConnTask {
            codec: codec.new_codec(Role::Client),
            // Fresh ids stay below 2^31 so they fit every protocol's id field.
            ids: IdMap::new(i32::MAX as u64),
            fifo: VecDeque::new(),
            single: None,
            multiplexed,
            idle_timeout,
            out_of_band,
            _open: OpenGuard::new(open_connections),
        };
        tokio::spawn(task.run(stream, rx));
        Ok(UpstreamConn { tx })
    }

    /// True while the connection's task runs.
    pub(crate) fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queues `msg`; returns where its reply will arrive, or `None` when it expects none.
    pub(crate) async fn request(
        &self,
        msg: Message,
        expects_reply: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Message, UpstreamError>>>, UpstreamError> {
        if !expects_reply {
            self.send(Outbound { msg, reply: None }).await?;
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        self.send(Outbound {
            msg,
            reply: Some(ReplyTo::Once(tx)),
        })
        .await?;
        Ok(Some(rx))
    }

    /// Queues a request without waiting; gives it back when the connection's queue is full
    /// or the connection is gone.
    // The request comes back by value; boxing it would cost an allocation per request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, out: Outbound) -> Result<(), Outbound> {
        self.tx.try_send(out).map_err(|e| match e {
            mpsc::error::TrySendError::Full(out) | mpsc::error::TrySendError::Closed(out) => out,
        })
    }

    /// Queues a request on this connection.
    pub(crate) async fn send(&self, out: Outbound) -> Result<(), UpstreamError> {
        self.tx
            .send(out)
            .await
            .map_err(|_| UpstreamError::Reset("connection closed".into()))
    }
}

struct ConnTask {
    codec: Box<dyn Codec>,
    /// Multiplexed, id-correlated requests in flight, by the fresh id they were sent with.
    ids: IdMap<ReplyTo>,
    /// Pipeline-correlated requests in flight, in order.
    fifo: VecDeque<ReplyTo>,
    /// Exclusive mode: the one id-correlated request in flight (its id is unchanged).
    single: Option<ReplyTo>,
    multiplexed: bool,
    idle_timeout: Duration,
    /// Where frames that answer no request go (a pinned connection's pub/sub messages); they
    /// are dropped on shared connections.
    out_of_band: Option<mpsc::UnboundedSender<Message>>,
    _open: OpenGuard,
}

/// Counts the connection as open until the task ends.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenGuard(count)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnTask {
    fn in_flight(&self) -> usize {
        self.ids.len() + self.fifo.len() + usize::from(self.single.is_some())
    }

    async fn run(mut self, stream: TcpStream, mut rx: mpsc::Receiver<Outbound>) {
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let mut wbuf = BytesMut::with_capacity(16 * 1024);
        let reason = loop {
            let can_send = self.multiplexed || self.in_flight() == 0;
            let idle = self.in_flight() == 0 && self.out_of_band.is_none();
            tokio::select! {
                out = rx.recv(), if can_send => {
                    let Some(out) = out else { break "no more requests".to_owned() };
                    self.write_one(out, &mut wbuf);
                    // Batch whatever else is already queued into the same write.
                    while self.multiplexed {
                        match rx.try_recv() {
                            Ok(out) => self.write_one(out, &mut wbuf),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = wr.write_all(&wbuf).await {
                        break format!("write failed: {e}");
                    }
                    wbuf.clear();
                }
                n = rd.read_buf(&mut rbuf) => {
                    match n {
                        Ok(0) => break "closed by upstream".to_owned(),
                        Ok(_) => {
                            if let Err(e) = self.read_replies(&mut rbuf, &mut wbuf) {
                                break e;
                            }
                            // Answers to the upstream's own heartbeats.
                            if !wbuf.is_empty() {
                                if let Err(e) = wr.write_all(&wbuf).await {
                                    break format!("write failed: {e}");
                                }
                                wbuf.clear();
                            }
                        }
                        Err(e) => break format!("read failed: {e}"),
                    }
                }
                () = tokio::time::sleep(self.idle_timeout), if idle => break "idle".to_owned(),
            }
        };
        tracing::debug!(%reason, in_flight = self.in_flight(), "upstream connection closing");
        let err = UpstreamError::Reset(reason);
        let waiting = self
            .ids
            .drain()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .into_iter()
            .chain(self.fifo.drain(..))
            .chain(self.single.take());
        for reply in waiting {
            reply.send(Err(err.clone()));
        }
        // Requests still queued fail too.
        rx.close();
        while let Ok(out) = rx.try_recv() {
            if let Some(reply) = out.reply {
                reply.send(Err(err.clone()));
            }
        }
    }

    fn write_one(&mut self, out: Outbound, wbuf: &mut BytesMut) {
        let Outbound { mut msg, reply } = out;
        let before = wbuf.len();
        let Some(reply) = reply else {
            if let Err(e) = self.codec.encode(&msg, wbuf) {
                wbuf.truncate(before);
                tracing::warn!(error = %e, "one-way request cannot be encoded; dropped");
            }
            return;
        };
        let fresh = match msg.correlation() {
            Correlation::Id(_) if self.multiplexed => match self.ids.insert(reply) {
                Ok(fresh) => {
                    msg.set_correlation(fresh);
                    Some(fresh)
                }
                Err(reply) => {
                    reply.send(Err(UpstreamError::IdsExhausted));
                    return;
                }
            },
            Correlation::Id(_) => {
                self.single = Some(reply);
                None
            }
            Correlation::Pipeline => {
                self.fifo.push_back(reply);
                None
            }
        };
        if let Err(e) = self.codec.encode(&msg, wbuf) {
            wbuf.truncate(before);
            let reply = match (fresh, msg.correlation()) {
                (Some(id), _) => self.ids.remove(id),
                (None, Correlation::Pipeline) => self.fifo.pop_back(),
                (None, Correlation::Id(_)) => self.single.take(),
            };
            if let Some(r) = reply {
                r.send(Err(UpstreamError::Encode(e.to_string())));
            }
        }
    }

    fn read_replies(&mut self, rbuf: &mut BytesMut, wbuf: &mut BytesMut) -> Result<(), String> {
        loop {
            let msg = match self.codec.decode(rbuf) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) if e.is_fatal() => return Err(format!("bad reply framing: {e}")),
                Err(e) => {
                    tracing::warn!(error = %e, "upstream sent a bad reply");
                    continue;
                }
            };
            if msg.kind() == MessageKind::Heartbeat {
                // The proxy sends no heartbeats upstream, so this is the server's own probe.
                if let Some(pong) = self.codec.heartbeat_reply(&msg)
                    && let Err(e) = self.codec.encode(&pong, wbuf)
                {
                    tracing::warn!(error = %e, "heartbeat reply cannot be encoded");
                }
                continue;
            }
            if !msg.kind().is_reply() {
                // Out-of-band frames (Redis pub/sub pushes, stream frames) answer no request.
                match &self.out_of_band {
                    Some(tx) => {
                        let _ = tx.send(msg);
                    }
                    None => {
                        tracing::debug!(kind = ?msg.kind(), "out-of-band frame on a shared connection dropped");
                    }
                }
                continue;
            }
            let reply_to = match msg.correlation() {
                Correlation::Id(id) if self.multiplexed => self.ids.remove(id),
                Correlation::Id(_) => self.single.take(),
                Correlation::Pipeline => self.fifo.pop_front(),
            };
            match reply_to {
                Some(r) => r.send(Ok(msg)),
                None => tracing::warn!(correlation = ?msg.correlation(), "reply to no request"),
            }
        }
    }
}
