//! A cluster at run time: its endpoints' connection pools, and the shared sans-IO core's
//! balancer, circuit breakers and outlier detector behind one lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meta_protocol_core::{Message, NewCodec};
use meta_protocol_runtime::lb::{Balancer, Endpoint as LbEndpoint, PickInput};
use meta_protocol_runtime::resilience::{
    AttemptFailure, Breaker, OutlierDetector, OutlierEvent, Resource, RetryPolicy,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::{ClusterConfig, PoolMode};
use crate::stats::Counter;
use crate::upstream::{Outbound, ReplyTo, UpstreamConn, UpstreamError};

/// How an attempt on an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A reply came.
    Replied,
    /// A request that expects no reply was sent.
    Sent,
    /// No reply in time.
    TimedOut,
    /// The connection or the exchange failed.
    Failed,
    /// Nobody waits any more (the downstream connection closed).
    Abandoned,
}

impl Attempt {
    pub(crate) fn of<T>(result: &Result<Option<T>, CallError>) -> Attempt {
        match result {
            Ok(Some(_)) => Attempt::Replied,
            Ok(None) => Attempt::Sent,
            Err(CallError::Timeout(_)) => Attempt::TimedOut,
            Err(_) => Attempt::Failed,
        }
    }
}

/// Ends an attempt when dropped, as whatever `end` says by then.
struct AttemptGuard<'a> {
    cluster: &'a Cluster,
    endpoint: usize,
    end: Attempt,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        self.cluster.end(self.endpoint, self.end);
    }
}

/// What [`Cluster::try_dispatch`] did with a request.
// `Slow` hands the message back by value; boxing it would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Dispatch {
    /// Sent to endpoint `.0`; its reply goes to the given queue. Requests that expect no
    /// reply are finished already.
    Sent(usize),
    /// Answered locally with this error.
    Failed(CallError),
    /// Not sent: the connection of the chosen endpoint `.1` is not open yet or its queue is
    /// full; the waiting path ([`Cluster::call_picked`]) takes the message and the attempt.
    Slow(Message, usize),
}

/// Why a call to a cluster produced no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A circuit breaker is open.
    #[error("circuit breaker open ({0:?})")]
    Overflow(Resource),
    /// No endpoint is healthy.
    #[error("no healthy endpoint")]
    NoHealthy,
    /// The reply did not come in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Per-cluster counters.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests sent.
    pub requests: Counter,
    /// Replies received.
    pub replies: Counter,
    /// Calls that timed out.
    pub timeouts: Counter,
    /// Calls that failed on the connection.
    pub failures: Counter,
    /// Calls refused by a breaker.
    pub overflows: Counter,
    /// Endpoints ejected by outlier detection.
    pub ejections: Counter,
    /// Upstream connections opened.
    pub connections_opened: Counter,
}

/// Where the reply to a request sent with [`Cluster::send_on`] arrives.
pub(crate) type ReplyRx = oneshot::Receiver<Result<Message, UpstreamError>>;

/// Waits up to `timeout` for a reply.
/// `timeout` from now, or a far-off instant when that is beyond what the clock can hold (a
/// configured "never").
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

pub(crate) async fn await_reply(rx: ReplyRx, timeout: Duration) -> Result<Message, CallError> {
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(CallError::Timeout(timeout)),
        Ok(Err(_)) => Err(UpstreamError::Reset("connection task ended".into()).into()),
        Ok(Ok(reply)) => Ok(reply?),
    }
}

pub(crate) struct Cluster {
    pub(crate) name: String,
    endpoints: Vec<EndpointPool>,
    core: Mutex<Core>,
    codec: Arc<dyn NewCodec>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    multiplexed: bool,
    max_connections: u32,
    open_connections: Arc<AtomicUsize>,
    pub(crate) stats: ClusterStats,
}

struct Core {
    balancer: Balancer,
    breaker: Breaker,
    outlier: Option<OutlierDetector>,
}

struct EndpointPool {
    addr: SocketAddr,
    /// Open connections, read without waiting on the hot path.
    slots: Vec<Mutex<Option<UpstreamConn>>>,
    /// Serialises connecting, per slot, so that one connection is made, not one per request.
    connecting: Vec<tokio::sync::Mutex<()>>,
    next: AtomicUsize,
    active: AtomicU32,
    /// Replies counted per endpoint (the demo prints these).
    replies: Counter,
}

/// Holds one unit of a breaker resource until dropped.
pub(crate) struct Permit<'a> {
    cluster: &'a Cluster,
    resource: Resource,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.cluster.core().breaker.release(self.resource);
    }
}

impl Cluster {
    pub(crate) fn new(config: &ClusterConfig, codec: Arc<dyn NewCodec>) -> Self {
        let endpoints: Vec<EndpointPool> = config
            .endpoints
            .iter()
            .map(|e| EndpointPool {
                // Validated by `Config::validate`.
                addr: e
                    .address
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
                slots: (0..config.pool.connections_per_endpoint)
                    .map(|_| Mutex::new(None))
                    .collect(),
                connecting: (0..config.pool.connections_per_endpoint)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                next: AtomicUsize::new(0),
                active: AtomicU32::new(0),
                replies: Counter::default(),
            })
            .collect();
        let lb_endpoints = config
            .endpoints
            .iter()
            .map(|e| LbEndpoint {
                id: e.address.clone(),
                weight: e.weight,
                healthy: true,
                locality: e.locality.clone(),
            })
            .collect();
        let mut balancer = Balancer::new(config.lb_policy, lb_endpoints);
        if !config.locality_weights.is_empty() {
            balancer = balancer.with_locality_weights(
                config
                    .locality_weights
                    .iter()
                    .map(|(l, w)| (l.as_str(), *w)),
            );
        }
        Cluster {
            name: config.name.clone(),
            core: Mutex::new(Core {
                balancer,
                breaker: Breaker::new(config.circuit_breakers),
                outlier: config
                    .outlier_detection
                    .map(|o| OutlierDetector::new(o, endpoints.len())),
            }),
            endpoints,
            codec,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            multiplexed: config.pool.mode == PoolMode::Multiplexed,
            max_connections: config.circuit_breakers.max_connections,
            open_connections: Arc::new(AtomicUsize::new(0)),
            stats: ClusterStats::default(),
        }
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        // A panic while holding the lock leaves plain counters behind; keep using them.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn permit(&self, resource: Resource) -> Result<Permit<'_>, CallError> {
        if self.core().breaker.try_acquire(resource) {
            Ok(Permit {
                cluster: self,
                resource,
            })
        } else {
            self.stats.overflows.inc();
            Err(CallError::Overflow(resource))
        }
    }

    /// A permit for one retry, when the policy and the retry budget allow it.
    pub(crate) fn retry_permit(
        &self,
        policy: &RetryPolicy,
        failure: AttemptFailure<'_>,
        attempts: u32,
    ) -> Option<Permit<'_>> {
        let allowed = {
            let core = self.core();
            policy.should_retry(
                failure,
                attempts,
                core.breaker.outstanding(Resource::Retry),
                core.breaker.outstanding(Resource::Request),
            )
        };
        if allowed {
            self.permit(Resource::Retry).ok()
        } else {
            None
        }
    }

    /// Addresses and reply counts per endpoint.
    pub(crate) fn endpoint_replies(&self) -> Vec<(SocketAddr, u64)> {
        self.endpoints
            .iter()
            .map(|e| (e.addr, e.replies.get()))
            .collect()
    }

    /// Picks an endpoint with the balancer, under the caller's lock of the core. Reads the
    /// clock only when outlier detection is on.
    fn pick_in(&self, core: &mut Core, hash: Option<u64>, random: u64) -> Option<usize> {
        let active: smallvec::SmallVec<[u32; 16]> = self
            .endpoints
            .iter()
            .map(|e| e.active.load(Ordering::Relaxed))
            .collect();
        if let Some(outlier) = &core.outlier {
            let now = Instant::now();
            for i in 0..self.endpoints.len() {
                core.balancer.set_healthy(i, !outlier.is_ejected(i, now));
            }
        }
        core.balancer.pick(PickInput {
            random,
            hash,
            active: &active,
        })
    }

    /// Tells outlier detection how an attempt on `endpoint` went, under the caller's lock of
    /// the core.
    fn record_in(&self, core: &mut Core, endpoint: usize, ok: bool) {
        let Some(outlier) = core.outlier.as_mut() else {
            return;
        };
        if ok {
            outlier.success(endpoint);
            return;
        }
        let now = Instant::now();
        if let OutlierEvent::Ejected(until) = outlier.failure(endpoint, now) {
            self.stats.ejections.inc();
            tracing::warn!(
                cluster = %self.name,
                endpoint = %self.endpoints[endpoint].addr,
                for_ms = until.saturating_duration_since(now).as_millis() as u64,
                "endpoint ejected"
            );
        }
    }

    async fn connection(&self, i: usize) -> Result<UpstreamConn, CallError> {
        let ep = &self.endpoints[i];
        let slot = ep.next.fetch_add(1, Ordering::Relaxed) % ep.slots.len();
        let open = |ep: &EndpointPool| {
            ep.slots[slot]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .filter(|c| c.is_open())
                .cloned()
        };
        if let Some(c) = open(ep) {
            return Ok(c);
        }
        let _connecting = ep.connecting[slot].lock().await;
        if let Some(c) = open(ep) {
            // Another request connected while this one waited.
            return Ok(c);
        }
        let _pending = self.permit(Resource::Pending)?;
        if self.open_connections.load(Ordering::Relaxed) >= self.max_connections as usize {
            self.stats.overflows.inc();
            return Err(CallError::Overflow(Resource::Connection));
        }
        let conn = UpstreamConn::connect(
            ep.addr,
            &self.codec,
            self.connect_timeout,
            self.idle_timeout,
            self.multiplexed,
            self.open_connections.clone(),
            None,
        )
        .await?;
        self.stats.connections_opened.inc();
        *ep.slots[slot].lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// A connection of its own to one endpoint, for a downstream connection that a stateful
    /// request pinned (Redis MULTI, SUBSCRIBE, SELECT...). Frames that answer no request go to
    /// `out_of_band`.
    pub(crate) async fn dedicated(
        &self,
        hash: Option<u64>,
        random: u64,
        out_of_band: mpsc::UnboundedSender<Message>,
    ) -> Result<UpstreamConn, CallError> {
        let i = self
            .pick_in(&mut self.core(), hash, random)
            .ok_or(CallError::NoHealthy)?;
        if self.open_connections.load(Ordering::Relaxed) >= self.max_connections as usize {
            self.stats.overflows.inc();
            return Err(CallError::Overflow(Resource::Connection));
        }
        let conn = UpstreamConn::connect(
            self.endpoints[i].addr,
            &self.codec,
            self.connect_timeout,
            self.idle_timeout,
            true,
            self.open_connections.clone(),
            Some(out_of_band),
        )
        .await
        .inspect_err(|_| self.record_in(&mut self.core(), i, false))?;
        self.stats.connections_opened.inc();
        Ok(conn)
    }

    /// Queues `msg` on a dedicated connection, in the caller's order; returns where its reply
    /// will arrive (none for requests that get no reply).
    pub(crate) async fn send_on(
        &self,
        conn: &UpstreamConn,
        msg: Message,
        expects_reply: bool,
    ) -> Result<Option<ReplyRx>, CallError> {
        self.stats.requests.inc();
        Ok(conn.request(msg, expects_reply).await?)
    }

    /// Sends `msg` to an endpoint and waits for its reply (`Ok(None)` for requests that get
    /// none).
    pub(crate) async fn call(
        &self,
        msg: Message,
        expects_reply: bool,
        hash: Option<u64>,
        random: u64,
        timeout: Duration,
    ) -> Result<Option<Message>, CallError> {
        let i = self.begin(hash, random)?;
        self.call_picked(i, msg, expects_reply, timeout).await
    }

    /// [`Cluster::call`] on endpoint `i`, already picked by [`Cluster::try_dispatch`]
    /// (which started the attempt).
    pub(crate) async fn call_picked(
        &self,
        i: usize,
        msg: Message,
        expects_reply: bool,
        timeout: Duration,
    ) -> Result<Option<Message>, CallError> {
        self.stats.requests.inc();
        // Ends the attempt even if this future is dropped half way.
        let mut attempt = AttemptGuard {
            cluster: self,
            endpoint: i,
            end: Attempt::Abandoned,
        };
        let result = self.call_endpoint(i, msg, expects_reply, timeout).await;
        attempt.end = Attempt::of(&result);
        result
    }

    /// Starts an attempt: a request permit from the circuit breaker and an endpoint from the
    /// balancer. Every successful `begin` is followed by exactly one [`Cluster::end`].
    fn begin(&self, hash: Option<u64>, random: u64) -> Result<usize, CallError> {
        let mut core = self.core();
        if !core.breaker.try_acquire(Resource::Request) {
            drop(core);
            self.stats.overflows.inc();
            return Err(CallError::Overflow(Resource::Request));
        }
        let Some(i) = self.pick_in(&mut core, hash, random) else {
            core.breaker.release(Resource::Request);
            return Err(CallError::NoHealthy);
        };
        self.endpoints[i].active.fetch_add(1, Ordering::Relaxed);
        Ok(i)
    }

    /// Ends an attempt on endpoint `i`: counters, outlier detection, the request permit.
    pub(crate) fn end(&self, i: usize, attempt: Attempt) {
        let ep = &self.endpoints[i];
        ep.active.fetch_sub(1, Ordering::Relaxed);
        let outcome = match attempt {
            Attempt::Replied => {
                self.stats.replies.inc();
                ep.replies.inc();
                Some(true)
            }
            Attempt::Sent | Attempt::Abandoned => None,
            Attempt::TimedOut => {
                self.stats.timeouts.inc();
                Some(false)
            }
            Attempt::Failed => {
                self.stats.failures.inc();
                Some(false)
            }
        };
        let mut core = self.core();
        if let Some(ok) = outcome {
            self.record_in(&mut core, i, ok);
        }
        core.breaker.release(Resource::Request);
    }

    /// Sends `msg` without waiting when an endpoint's connection is open and has room: the
    /// reply goes to `reply` (a downstream connection's completion queue). Otherwise says
    /// why, or hands the message back for the waiting path ([`Cluster::call`]).
    pub(crate) fn try_dispatch(
        &self,
        msg: Message,
        hash: Option<u64>,
        random: u64,
        reply: Option<ReplyTo>,
    ) -> Dispatch {
        let i = match self.begin(hash, random) {
            Ok(i) => i,
            Err(e) => return Dispatch::Failed(e),
        };
        let expects = reply.is_some();
        let ep = &self.endpoints[i];
        let slot = ep.next.fetch_add(1, Ordering::Relaxed) % ep.slots.len();
        let conn = ep.slots[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| c.is_open())
            .cloned();
        let Some(conn) = conn else {
            // The attempt stays on the endpoint the balancer chose.
            return Dispatch::Slow(msg, i);
        };
        match conn.try_send(Outbound { msg, reply }) {
            Ok(()) if expects => {
                self.stats.requests.inc();
                Dispatch::Sent(i)
            }
            Ok(()) => {
                self.stats.requests.inc();
                self.end(i, Attempt::Sent);
                Dispatch::Sent(i)
            }
            Err(out) => Dispatch::Slow(out.msg, i),
        }
    }

    async fn call_endpoint(
        &self,
        i: usize,
        msg: Message,
        expects_reply: bool,
        timeout: Duration,
    ) -> Result<Option<Message>, CallError> {
        // One deadline for all of it: connecting, waiting for room in the connection's
        // queue, and the reply.
        let deadline = deadline_after(timeout);
        let exchange = async {
            let conn = self.connection(i).await?;
            let Some(rx) = conn.request(msg, expects_reply).await? else {
                return Ok(None);
            };
            match rx.await {
                Ok(reply) => Ok(Some(reply?)),
                Err(_) => Err(UpstreamError::Reset("connection task ended".into()).into()),
            }
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout(timeout)))
    }
}
