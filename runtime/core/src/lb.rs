//! Load balancers: which endpoint of a cluster gets a request.
//!
//! Sans-IO: the host passes in a random number, the request's consistent-hash key and each
//! endpoint's number of active requests; the balancer never reads a clock or an RNG itself,
//! so the same inputs always give the same choice (and tests are exact).
//!
//! | policy | picks |
//! |---|---|
//! | [`Policy::RoundRobin`] | smooth weighted round robin |
//! | [`Policy::Random`] | weighted random |
//! | [`Policy::LeastRequest`] | the less loaded (active / weight) of two weighted-random endpoints |
//! | [`Policy::RingHash`] | consistent hashing on a ring (Karger), weighted by virtual nodes |
//! | [`Policy::Maglev`] | consistent hashing with Maglev's lookup table, weighted |
//!
//! Hash policies fall back to weighted random for requests without a hash key. Unhealthy
//! endpoints are skipped; with no healthy endpoint, `pick` returns `None`.

use serde::{Deserialize, Serialize};

/// A load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices on active requests per unit of weight.
    LeastRequest,
    /// Consistent hashing on a ring.
    RingHash,
    /// Consistent hashing with a Maglev table.
    Maglev,
}

/// An endpoint as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A stable identity (the address), hashed to place the endpoint on rings and tables.
    pub id: String,
    /// Relative weight, at least 1.
    pub weight: u32,
    /// False while the endpoint is ejected or failing health checks.
    pub healthy: bool,
}

/// Per-request inputs to [`Balancer::pick`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PickInput<'a> {
    /// A uniformly random number from the host.
    pub random: u64,
    /// The request's consistent-hash key, from the route's hash policy.
    pub hash: Option<u64>,
    /// Active requests per endpoint (same order as the endpoints); empty means all zero.
    pub active: &'a [u32],
}

/// A balancer over one cluster's endpoints.
#[derive(Debug, Clone)]
pub struct Balancer {
    policy: Policy,
    endpoints: Vec<Endpoint>,
    /// Smooth round robin's current weights.
    current: Vec<i64>,
    /// Ring: (point, endpoint index), sorted by point.
    ring: Vec<(u64, usize)>,
    /// Maglev lookup table of endpoint indices.
    table: Vec<usize>,
}

/// Ring entries per unit of weight.
const RING_POINTS_PER_WEIGHT: u64 = 64;
/// Maglev table size (prime, as Maglev requires).
const MAGLEV_TABLE_SIZE: usize = 65_537;

// === impl Balancer ===

impl Balancer {
    /// A balancer with `policy` over `endpoints` (weights of 0 count as 1).
    pub fn new(policy: Policy, mut endpoints: Vec<Endpoint>) -> Self {
        for e in &mut endpoints {
            e.weight = e.weight.max(1);
        }
        let mut b = Balancer {
            policy,
            current: vec![0; endpoints.len()],
            endpoints,
            ring: Vec::new(),
            table: Vec::new(),
        };
        b.rebuild();
        b
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Marks endpoint `i` healthy or not (outlier detection, health checks). Consistent-hash
    /// structures are rebuilt so that only keys of the changed endpoint move.
    pub fn set_healthy(&mut self, i: usize, healthy: bool) {
        if let Some(e) = self.endpoints.get_mut(i)
            && e.healthy != healthy
        {
            e.healthy = healthy;
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        match self.policy {
            Policy::RingHash => self.ring = self.build_ring(),
            Policy::Maglev => self.table = self.build_maglev(),
            _ => {}
        }
    }

    /// The endpoint index for one request; `None` when no endpoint is healthy.
    pub fn pick(&mut self, input: PickInput<'_>) -> Option<usize> {
        if !self.endpoints.iter().any(|e| e.healthy) {
            return None;
        }
        match (self.policy, input.hash) {
            (Policy::RoundRobin, _) => self.round_robin(),
            (Policy::Random, _) => self.weighted_random(input.random),
            (Policy::LeastRequest, _) => self.least_request(input),
            (Policy::RingHash, Some(h)) => self.ring_lookup(h),
            (Policy::Maglev, Some(h)) => self
                .table
                .get(h as usize % self.table.len().max(1))
                .copied(),
            (Policy::RingHash | Policy::Maglev, None) => self.weighted_random(input.random),
        }
    }

    fn round_robin(&mut self) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            if !e.healthy {
                continue;
            }
            let w = i64::from(e.weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    fn weighted_random(&self, random: u64) -> Option<usize> {
        let total: u64 = self.healthy().map(|(_, e)| u64::from(e.weight)).sum();
        let mut point = random % total.max(1);
        for (i, e) in self.healthy() {
            let w = u64::from(e.weight);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        None
    }

    fn least_request(&self, input: PickInput<'_>) -> Option<usize> {
        let a = self.weighted_random(input.random)?;
        let b = self.weighted_random(input.random.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15)?;
        let load = |i: usize| {
            let active = u64::from(input.active.get(i).copied().unwrap_or(0));
            // active / weight, compared without division.
            (active, u64::from(self.endpoints[i].weight))
        };
        let ((la, wa), (lb, wb)) = (load(a), load(b));
        Some(if la * wb <= lb * wa { a } else { b })
    }

    fn healthy(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        self.endpoints.iter().enumerate().filter(|(_, e)| e.healthy)
    }

    fn build_ring(&self) -> Vec<(u64, usize)> {
        let mut ring = Vec::new();
        for (i, e) in self.healthy() {
            for v in 0..u64::from(e.weight) * RING_POINTS_PER_WEIGHT {
                ring.push((hash_parts(e.id.as_bytes(), v), i));
            }
        }
        ring.sort_unstable();
        ring
    }

    fn ring_lookup(&self, h: u64) -> Option<usize> {
        let at = self.ring.partition_point(|(p, _)| *p < h);
        self.ring.get(at).or(self.ring.first()).map(|(_, i)| *i)
    }

    /// Maglev (Eisenbud et al., NSDI 2016), weighted by letting heavier endpoints claim
    /// proportionally more turns.
    fn build_maglev(&self) -> Vec<usize> {
        let m = MAGLEV_TABLE_SIZE as u64;
        let hosts: Vec<(usize, u64, u64, u32)> = self
            .healthy()
            .map(|(i, e)| {
                let offset = hash_parts(e.id.as_bytes(), 0xdead) % m;
                let skip = hash_parts(e.id.as_bytes(), 0xbeef) % (m - 1) + 1;
                (i, offset, skip, e.weight)
            })
            .collect();
        let mut table = vec![usize::MAX; MAGLEV_TABLE_SIZE];
        if hosts.is_empty() {
            return Vec::new();
        }
        let max_weight = hosts.iter().map(|h| h.3).max().unwrap_or(1);
        let mut next = vec![0u64; hosts.len()];
        let mut credit = vec![0u32; hosts.len()];
        let mut filled = 0;
        'fill: loop {
            for (k, &(i, offset, skip, weight)) in hosts.iter().enumerate() {
                credit[k] += weight;
                if credit[k] < max_weight {
                    continue;
                }
                credit[k] -= max_weight;
                loop {
                    let slot = ((offset + next[k] * skip) % m) as usize;
                    next[k] += 1;
                    if table[slot] == usize::MAX {
                        table[slot] = i;
                        filled += 1;
                        break;
                    }
                }
                if filled == MAGLEV_TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        table
    }
}

/// FNV-1a of `bytes` then the 8 bytes of `n`, finished with a 64-bit mixer so that nearby
/// inputs land far apart.
fn hash_parts(bytes: &[u8], n: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes.iter().chain(n.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                id: format!("10.0.0.{i}:9000"),
                weight: *w,
                healthy: true,
            })
            .collect()
    }

    fn counts(b: &mut Balancer, n: u64, input: impl Fn(u64) -> PickInput<'static>) -> Vec<u64> {
        let mut c = vec![0; b.endpoints().len()];
        for i in 0..n {
            c[b.pick(input(i)).expect("healthy")] += 1;
        }
        c
    }

    fn mix(i: u64) -> u64 {
        hash_parts(b"test", i)
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let mut b = Balancer::new(Policy::RoundRobin, endpoints(&[5, 1, 1]));
        let seq: Vec<usize> = (0..7)
            .map(|_| b.pick(PickInput::default()).expect("healthy"))
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        let c = counts(&mut b, 700, |_| PickInput::default());
        assert_eq!(c, vec![500, 100, 100]);
    }

    #[test]
    fn random_follows_weights() {
        let mut b = Balancer::new(Policy::Random, endpoints(&[3, 1]));
        let c = counts(&mut b, 4000, |i| PickInput {
            random: i,
            ..Default::default()
        });
        assert_eq!(c, vec![3000, 1000], "uniform inputs give exact shares");
    }

    #[test]
    fn unhealthy_endpoints_are_skipped_and_none_when_all_are_down() {
        for policy in [
            Policy::RoundRobin,
            Policy::Random,
            Policy::LeastRequest,
            Policy::RingHash,
            Policy::Maglev,
        ] {
            let mut b = Balancer::new(policy, endpoints(&[1, 1, 1]));
            b.set_healthy(1, false);
            for i in 0..300 {
                let pick = b.pick(PickInput {
                    random: mix(i),
                    hash: Some(mix(i + 1)),
                    active: &[],
                });
                assert_ne!(pick, Some(1), "{policy:?}");
                assert!(pick.is_some(), "{policy:?}");
            }
            b.set_healthy(0, false);
            b.set_healthy(2, false);
            assert_eq!(b.pick(PickInput::default()), None, "{policy:?}");
        }
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let mut b = Balancer::new(Policy::LeastRequest, endpoints(&[1, 1]));
        let active = [10u32, 0];
        let mut to_busy = 0;
        for i in 0..1000 {
            let p = b
                .pick(PickInput {
                    random: mix(i),
                    hash: None,
                    active: &active,
                })
                .expect("healthy");
            to_busy += usize::from(p == 0);
        }
        // The busy endpoint wins only when both choices land on it (about a quarter).
        assert!(to_busy < 350, "{to_busy}");
    }

    #[test]
    fn consistent_hashing_is_sticky_balanced_and_moves_few_keys() {
        for policy in [Policy::RingHash, Policy::Maglev] {
            let mut b = Balancer::new(policy, endpoints(&[1, 1, 1, 1]));
            let keys: Vec<u64> = (0..4000).map(mix).collect();
            let pick = |b: &mut Balancer, k: u64| {
                b.pick(PickInput {
                    random: 0,
                    hash: Some(k),
                    active: &[],
                })
                .expect("healthy")
            };
            let before: Vec<usize> = keys.iter().map(|k| pick(&mut b, *k)).collect();
            let again: Vec<usize> = keys.iter().map(|k| pick(&mut b, *k)).collect();
            assert_eq!(before, again, "{policy:?}: same key, same endpoint");
            let mut share = [0usize; 4];
            for p in &before {
                share[*p] += 1;
            }
            assert!(
                share.iter().all(|s| (700..=1300).contains(s)),
                "{policy:?}: {share:?}"
            );

            b.set_healthy(3, false);
            let after: Vec<usize> = keys.iter().map(|k| pick(&mut b, *k)).collect();
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(x, y)| x != y && **x != 3)
                .count();
            // Keys of the surviving endpoints stay put (Maglev allows a little churn).
            assert!(
                moved < keys.len() / 50,
                "{policy:?}: {moved} keys moved needlessly"
            );
        }
    }

    #[test]
    fn consistent_hashing_respects_weights() {
        for policy in [Policy::RingHash, Policy::Maglev] {
            let mut b = Balancer::new(policy, endpoints(&[3, 1]));
            let c = counts(&mut b, 8000, |i| PickInput {
                random: 0,
                hash: Some(mix(i)),
                active: &[],
            });
            let share = c[0] as f64 / 8000.0;
            assert!((0.68..0.82).contains(&share), "{policy:?}: {c:?}");
        }
    }
}
