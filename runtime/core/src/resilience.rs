//! Circuit breakers, outlier detection and retry budgets: plain counters and timestamps that
//! the host updates as requests start and finish, passing `now` in.

use meta_protocol_core::Metadata;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

// === circuit breakers ===

/// Limits on what one cluster may have outstanding at once (Envoy's circuit-breaker
/// thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerLimits {
    /// Upstream connections.
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

impl Default for BreakerLimits {
    /// Envoy's defaults: 1024 of each, 3 retries.
    fn default() -> Self {
        BreakerLimits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// What a breaker guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// An upstream connection.
    Connection,
    /// A request waiting for a connection.
    Pending,
    /// A request in flight.
    Request,
    /// A retry in flight.
    Retry,
}

/// The counters of one cluster's circuit breakers.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    limits: BreakerLimits,
    open: [u32; 4],
    /// Times each resource was refused.
    overflows: [u64; 4],
}

impl Breaker {
    /// A breaker with `limits`, nothing outstanding.
    pub fn new(limits: BreakerLimits) -> Self {
        Breaker {
            limits,
            ..Default::default()
        }
    }

    fn slot(r: Resource) -> usize {
        match r {
            Resource::Connection => 0,
            Resource::Pending => 1,
            Resource::Request => 2,
            Resource::Retry => 3,
        }
    }

    fn limit(&self, r: Resource) -> u32 {
        match r {
            Resource::Connection => self.limits.max_connections,
            Resource::Pending => self.limits.max_pending_requests,
            Resource::Request => self.limits.max_requests,
            Resource::Retry => self.limits.max_retries,
        }
    }

    /// Takes one unit of `r`; `false` (and an overflow counted) when the breaker is open.
    pub fn try_acquire(&mut self, r: Resource) -> bool {
        let i = Self::slot(r);
        if self.open[i] >= self.limit(r) {
            self.overflows[i] += 1;
            return false;
        }
        self.open[i] += 1;
        true
    }

    /// Returns one unit of `r`.
    pub fn release(&mut self, r: Resource) {
        let i = Self::slot(r);
        self.open[i] = self.open[i].saturating_sub(1);
    }

    /// Units of `r` outstanding.
    pub fn outstanding(&self, r: Resource) -> u32 {
        self.open[Self::slot(r)]
    }

    /// Times `r` was refused.
    pub fn overflows(&self, r: Resource) -> u64 {
        self.overflows[Self::slot(r)]
    }
}

// === outlier detection ===

/// When to eject an endpoint and for how long (Envoy's outlier detection, consecutive
/// errors).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Consecutive failures (errors, timeouts, connect failures) that eject an endpoint.
    pub consecutive_errors: u32,
    /// Ejection time for the first ejection; the n-th ejection lasts n times this.
    #[serde(with = "crate::duration")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(with = "crate::duration")]
    pub max_ejection_time: Duration,
    /// At most this percentage of a cluster's endpoints is ejected at once.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_errors: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Outlier state of one cluster's endpoints.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    config: OutlierConfig,
    hosts: Vec<HostState>,
}

#[derive(Debug, Clone, Default)]
struct HostState {
    consecutive: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// What a result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlierEvent {
    /// Nothing changed.
    None,
    /// The endpoint was ejected until the given instant.
    Ejected(Instant),
}

impl OutlierDetector {
    /// A detector for `hosts` endpoints.
    pub fn new(config: OutlierConfig, hosts: usize) -> Self {
        OutlierDetector {
            config,
            hosts: vec![HostState::default(); hosts],
        }
    }

    /// Records a success of endpoint `i`.
    pub fn success(&mut self, i: usize) {
        if let Some(h) = self.hosts.get_mut(i) {
            h.consecutive = 0;
        }
    }

    /// Records a failure of endpoint `i` at `now`; may eject it.
    pub fn failure(&mut self, i: usize, now: Instant) -> OutlierEvent {
        let ejected_now = self.ejected_count(now);
        let max = (self.hosts.len() * self.config.max_ejection_percent as usize / 100).max(1);
        let cfg = self.config;
        let Some(h) = self.hosts.get_mut(i) else {
            return OutlierEvent::None;
        };
        h.consecutive += 1;
        let already = h.ejected_until.is_some_and(|t| t > now);
        if already || h.consecutive < cfg.consecutive_errors || ejected_now >= max {
            return OutlierEvent::None;
        }
        h.consecutive = 0;
        h.ejections += 1;
        let time = cfg
            .base_ejection_time
            .saturating_mul(h.ejections)
            .min(cfg.max_ejection_time);
        let until = now + time;
        h.ejected_until = Some(until);
        OutlierEvent::Ejected(until)
    }

    /// True when endpoint `i` is ejected at `now`.
    pub fn is_ejected(&self, i: usize, now: Instant) -> bool {
        self.hosts
            .get(i)
            .and_then(|h| h.ejected_until)
            .is_some_and(|t| t > now)
    }

    /// Endpoints ejected at `now`.
    pub fn ejected_count(&self, now: Instant) -> usize {
        (0..self.hosts.len())
            .filter(|i| self.is_ejected(*i, now))
            .count()
    }
}

// === retries ===

/// What may be retried, how often, and the budget that keeps retries from multiplying load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retry when connecting to the upstream fails.
    pub on_connect_failure: bool,
    /// Retry when the upstream does not answer in time.
    pub on_timeout: bool,
    /// Retry replies whose `status` metadata is one of these.
    pub on_statuses: Vec<String>,
    /// Retries per request.
    pub max_retries: u32,
    /// Retries in flight may be at most this percentage of requests in flight...
    pub budget_percent: f64,
    /// ...but this many are always allowed.
    pub min_retry_concurrency: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            on_connect_failure: true,
            on_timeout: false,
            on_statuses: Vec::new(),
            max_retries: 1,
            budget_percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure<'a> {
    /// The connection could not be made.
    ConnectFailure,
    /// No reply in time.
    Timeout,
    /// A reply with this status.
    Status(&'a str),
}

/// The metadata key a reply's status is read from, for [`RetryPolicy::on_statuses`].
pub const STATUS_KEY: &str = "status";

impl RetryPolicy {
    /// True when the policy retries failures of this kind at all (budget aside).
    pub fn retries(&self, failure: AttemptFailure<'_>) -> bool {
        self.max_retries > 0
            && match failure {
                AttemptFailure::ConnectFailure => self.on_connect_failure,
                AttemptFailure::Timeout => self.on_timeout,
                AttemptFailure::Status(s) => self.on_statuses.iter().any(|x| x == s),
            }
    }

    /// The failure a reply stands for when its [`STATUS_KEY`] metadata is a status the policy
    /// retries; `None` for a reply to keep.
    pub fn reply_failure<'m>(&self, reply: &'m Metadata) -> Option<AttemptFailure<'m>> {
        let status = reply.get(STATUS_KEY)?;
        let failure = AttemptFailure::Status(status);
        self.retries(failure).then_some(failure)
    }

    /// True when an attempt that failed like this may be retried, given attempts made so far
    /// and the retries and requests in flight.
    pub fn should_retry(
        &self,
        failure: AttemptFailure<'_>,
        attempts: u32,
        retries_in_flight: u32,
        requests_in_flight: u32,
    ) -> bool {
        let budget = (f64::from(requests_in_flight) * self.budget_percent / 100.0) as u32;
        self.retries(failure)
            && attempts <= self.max_retries
            && retries_in_flight < budget.max(self.min_retry_concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_retried_only_for_listed_statuses() {
        let policy = RetryPolicy {
            on_statuses: vec!["30".into(), "31".into()],
            ..RetryPolicy::default()
        };
        let reply = |status: &str| Metadata::from_iter([("status", status.to_owned())]);
        assert_eq!(
            policy.reply_failure(&reply("31")),
            Some(AttemptFailure::Status("31"))
        );
        assert_eq!(policy.reply_failure(&reply("20")), None);
        assert_eq!(policy.reply_failure(&Metadata::new()), None, "no status");
        let never = RetryPolicy {
            max_retries: 0,
            ..policy.clone()
        };
        assert_eq!(never.reply_failure(&reply("31")), None);
        assert!(!never.retries(AttemptFailure::ConnectFailure));
        assert!(policy.retries(AttemptFailure::ConnectFailure));
        assert!(
            !policy.retries(AttemptFailure::Timeout),
            "on_timeout is off"
        );
    }

    #[test]
    fn breaker_opens_at_the_limit_and_counts_overflows() {
        let mut b = Breaker::new(BreakerLimits {
            max_requests: 2,
            ..Default::default()
        });
        assert!(b.try_acquire(Resource::Request));
        assert!(b.try_acquire(Resource::Request));
        assert!(!b.try_acquire(Resource::Request));
        assert_eq!(b.overflows(Resource::Request), 1);
        b.release(Resource::Request);
        assert!(b.try_acquire(Resource::Request));
        assert_eq!(b.outstanding(Resource::Request), 2);
        assert_eq!(b.outstanding(Resource::Connection), 0);
    }

    #[test]
    fn outlier_ejection_grows_and_expires() {
        let cfg = OutlierConfig {
            consecutive_errors: 3,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: 50,
        };
        let mut d = OutlierDetector::new(cfg, 2);
        let t0 = Instant::now();
        assert_eq!(d.failure(0, t0), OutlierEvent::None);
        d.success(0);
        assert_eq!(d.failure(0, t0), OutlierEvent::None);
        assert_eq!(d.failure(0, t0), OutlierEvent::None);
        assert_eq!(
            d.failure(0, t0),
            OutlierEvent::Ejected(t0 + Duration::from_secs(10))
        );
        assert!(d.is_ejected(0, t0 + Duration::from_secs(9)));
        assert!(!d.is_ejected(0, t0 + Duration::from_secs(10)));
        // Only half of the endpoints may be ejected: endpoint 1 stays while 0 is out.
        for _ in 0..3 {
            assert_eq!(d.failure(1, t0), OutlierEvent::None);
        }
        let t1 = t0 + Duration::from_secs(11);
        for _ in 0..2 {
            d.failure(0, t1);
        }
        assert_eq!(
            d.failure(0, t1),
            OutlierEvent::Ejected(t1 + Duration::from_secs(20)),
            "second ejection lasts twice as long"
        );
        let t2 = t1 + Duration::from_secs(21);
        for _ in 0..2 {
            d.failure(0, t2);
        }
        assert_eq!(
            d.failure(0, t2),
            OutlierEvent::Ejected(t2 + Duration::from_secs(25)),
            "capped"
        );
    }

    #[test]
    fn retries_follow_policy_and_budget() {
        let p = RetryPolicy {
            on_connect_failure: true,
            on_timeout: true,
            on_statuses: vec!["5".into()],
            max_retries: 2,
            budget_percent: 10.0,
            min_retry_concurrency: 1,
        };
        assert!(p.should_retry(AttemptFailure::Timeout, 1, 0, 1));
        assert!(p.should_retry(AttemptFailure::Status("5"), 2, 0, 1));
        assert!(!p.should_retry(AttemptFailure::Status("4"), 1, 0, 1));
        assert!(
            !p.should_retry(AttemptFailure::Timeout, 3, 0, 1),
            "max retries"
        );
        assert!(
            !p.should_retry(AttemptFailure::Timeout, 1, 1, 5),
            "budget: 10% of 5 < 1 in flight, min 1"
        );
        assert!(
            p.should_retry(AttemptFailure::Timeout, 1, 5, 100),
            "10% of 100 = 10"
        );
        assert!(!p.should_retry(AttemptFailure::Timeout, 1, 10, 100));
    }
}
