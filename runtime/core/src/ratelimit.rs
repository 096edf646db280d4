//! Local rate limiting: token buckets, one per listener or one per condition (metadata
//! matchers, first match wins), as Envoy's and Aeraki's local rate limit filters. The host
//! passes `now`; a request that finds its bucket empty is answered with the codec's
//! *over limit* error reply.

use std::time::{Duration, Instant};

use meta_protocol_core::Metadata;
use serde::{Deserialize, Serialize};

use crate::route::{MatchSet, MatchSpec, RouteError};

/// A token bucket: holds at most `max_tokens`, gains `tokens_per_fill` every `fill_interval`;
/// each request takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketSpec {
    /// Capacity, and the tokens at start.
    pub max_tokens: u32,
    /// Tokens added per interval.
    #[serde(default = "one")]
    pub tokens_per_fill: u32,
    /// How often tokens are added.
    #[serde(with = "crate::duration")]
    pub fill_interval: Duration,
}

fn one() -> u32 {
    1
}

/// A bucket for the requests a condition matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// Metadata matchers, as a route's `match`.
    #[serde(rename = "match", default)]
    pub matcher: MatchSpec,
    /// The condition's own bucket.
    pub token_bucket: TokenBucketSpec,
}

/// A local rate limit: the first condition that matches picks the bucket; requests no
/// condition matches use `token_bucket`, or are not limited when it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitSpec {
    /// The bucket of requests that no condition matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_bucket: Option<TokenBucketSpec>,
    /// Buckets for matching requests, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionSpec>,
}

/// Why a rate-limit configuration is refused; the text names the field (relative to the
/// filter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RateLimitError {
    /// The field, e.g. `conditions[1].token_bucket.max_tokens`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A running token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: TokenBucketSpec,
    tokens: u32,
    /// When the last fill was due.
    filled: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(spec: TokenBucketSpec, now: Instant) -> Self {
        TokenBucket {
            spec,
            tokens: spec.max_tokens,
            filled: now,
        }
    }

    /// Takes a token if there is one (after adding the fills due by `now`).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let interval = self.spec.fill_interval;
        let elapsed = now.saturating_duration_since(self.filled);
        let fills = elapsed.as_nanos() / interval.as_nanos().max(1);
        if fills > 0 {
            let added = fills.saturating_mul(u128::from(self.spec.tokens_per_fill));
            let room = u128::from(self.spec.max_tokens - self.tokens);
            self.tokens += added.min(room) as u32;
            // Whole intervals only, so that fills stay on their schedule.
            let whole = u32::try_from(fills).unwrap_or(u32::MAX);
            self.filled += interval.checked_mul(whole).unwrap_or(elapsed);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A compiled local rate limit.
#[derive(Debug, Clone)]
pub struct LocalRateLimit {
    conditions: Vec<(MatchSet, TokenBucket)>,
    default: Option<TokenBucket>,
}

impl LocalRateLimit {
    /// Compiles `spec` with full buckets at `now`.
    ///
    /// # Errors
    /// [`RateLimitError`] naming the field: a bucket with no tokens, no refill or no interval,
    /// a wrong matcher, or neither a bucket nor a condition.
    pub fn new(spec: &LocalRateLimitSpec, now: Instant) -> Result<Self, RateLimitError> {
        if spec.token_bucket.is_none() && spec.conditions.is_empty() {
            return Err(RateLimitError {
                field: "token_bucket".into(),
                reason: "set a token_bucket, conditions, or both".into(),
            });
        }
        let default = match &spec.token_bucket {
            Some(b) => Some(TokenBucket::new(check(b, "token_bucket")?, now)),
            None => None,
        };
        let mut conditions = Vec::with_capacity(spec.conditions.len());
        for (i, c) in spec.conditions.iter().enumerate() {
            let field = format!("conditions[{i}]");
            let bucket = check(&c.token_bucket, &format!("{field}.token_bucket"))?;
            let matchers = MatchSet::new(&field, &c.matcher).map_err(|e| RateLimitError {
                field: format!("{field}.match"),
                reason: match e {
                    RouteError::BadRegex { index, reason, .. } => {
                        format!("metadata[{index}].regex: {reason}")
                    }
                    RouteError::MatcherKind { index, name, .. } => format!(
                        "metadata[{index}] (`{name}`): set exactly one of exact, prefix, suffix, regex, present"
                    ),
                    other => other.to_string(),
                },
            })?;
            conditions.push((matchers, TokenBucket::new(bucket, now)));
        }
        Ok(LocalRateLimit {
            conditions,
            default,
        })
    }

    /// Takes a token for a request with metadata `md`; false when it is over the limit.
    pub fn allow(&mut self, md: &Metadata, now: Instant) -> bool {
        for (matchers, bucket) in &mut self.conditions {
            if matchers.matches(md) {
                return bucket.try_take(now);
            }
        }
        match &mut self.default {
            Some(bucket) => bucket.try_take(now),
            None => true,
        }
    }
}

fn check(b: &TokenBucketSpec, field: &str) -> Result<TokenBucketSpec, RateLimitError> {
    let bad = |name: &str, reason: &str| RateLimitError {
        field: format!("{field}.{name}"),
        reason: reason.into(),
    };
    if b.max_tokens == 0 {
        return Err(bad("max_tokens", "must be at least 1"));
    }
    if b.tokens_per_fill == 0 {
        return Err(bad("tokens_per_fill", "must be at least 1"));
    }
    if b.fill_interval.is_zero() {
        return Err(bad("fill_interval", "must be longer than 0"));
    }
    Ok(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(max: u32, per_fill: u32, ms: u64) -> TokenBucketSpec {
        TokenBucketSpec {
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_bucket_empties_and_refills_on_schedule() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(bucket(3, 2, 100), t0);
        assert_eq!((0..5).filter(|_| b.try_take(t0)).count(), 3);
        // 250 ms: two fills of two tokens, capped at three.
        let t = t0 + Duration::from_millis(250);
        assert_eq!((0..5).filter(|_| b.try_take(t)).count(), 3);
        // The next fill is due at 300 ms, not 350 ms: partial intervals are kept.
        assert!(!b.try_take(t0 + Duration::from_millis(299)));
        assert!(b.try_take(t0 + Duration::from_millis(300)));
    }

    #[test]
    fn the_first_matching_condition_picks_the_bucket() {
        let yaml = "token_bucket: { max_tokens: 5, fill_interval: 1s }\nconditions:\n  - match: { metadata: [ { name: method, exact: slow } ] }\n    token_bucket: { max_tokens: 1, fill_interval: 1s }\n";
        let spec: LocalRateLimitSpec = serde_norway::from_str(yaml).expect("yaml");
        let now = Instant::now();
        let mut rl = LocalRateLimit::new(&spec, now).expect("valid");
        let slow = Metadata::from_iter([("method", "slow")]);
        let fast = Metadata::from_iter([("method", "fast")]);
        assert!(rl.allow(&slow, now));
        assert!(
            !rl.allow(&slow, now),
            "the condition's bucket holds one token"
        );
        assert_eq!((0..10).filter(|_| rl.allow(&fast, now)).count(), 5);
        let unlimited = LocalRateLimit::new(
            &LocalRateLimitSpec {
                token_bucket: None,
                conditions: spec.conditions.clone(),
            },
            now,
        )
        .expect("valid");
        let mut unlimited = unlimited;
        assert!(
            (0..100).all(|_| unlimited.allow(&fast, now)),
            "no default bucket"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let now = Instant::now();
        let err =
            |spec: LocalRateLimitSpec| LocalRateLimit::new(&spec, now).unwrap_err().to_string();
        assert_eq!(
            err(LocalRateLimitSpec {
                token_bucket: Some(bucket(0, 1, 10)),
                conditions: vec![]
            }),
            "token_bucket.max_tokens: must be at least 1"
        );
        let cond = ConditionSpec {
            matcher: MatchSpec::default(),
            token_bucket: bucket(1, 1, 0),
        };
        assert_eq!(
            err(LocalRateLimitSpec {
                token_bucket: None,
                conditions: vec![cond]
            }),
            "conditions[0].token_bucket.fill_interval: must be longer than 0"
        );
        let yaml = "conditions:\n  - match: { metadata: [ { name: m, regex: \"(\" } ] }\n    token_bucket: { max_tokens: 1, fill_interval: 1s }\n";
        let spec: LocalRateLimitSpec = serde_norway::from_str(yaml).expect("yaml");
        assert!(err(spec).starts_with("conditions[0].match: metadata[0].regex:"));
        assert_eq!(
            err(LocalRateLimitSpec {
                token_bucket: None,
                conditions: vec![]
            }),
            "token_bucket: set a token_bucket, conditions, or both"
        );
    }
}
