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
//!
//! ## Locality weights
//!
//! [`Balancer::with_locality_weights`] makes every pick two-step, as Envoy's locality-weighted
//! load balancing does: first a locality (zone) by smooth weighted round robin over the
//! localities' *effective* weights, then an endpoint inside it with the policy. A locality's
//! effective weight is its weight scaled by its availability, with Envoy's overprovisioning
//! factor of 1.4: `weight * min(100, 140 * healthy / endpoints)`. So a locality keeps its full
//! share until fewer than about 72% of its endpoints are healthy, then loses share in
//! proportion, and a locality with no healthy endpoint gets none: its share goes to the
//! others. Endpoints without a locality, or in a locality without a weight, get no traffic.
//! The consistent-hash policies ignore locality weights.
//!
//! ```
//! use meta_protocol_runtime::lb::{Balancer, Endpoint, PickInput, Policy};
//!
//! let endpoint = |id: &str, zone: &str| Endpoint {
//!     id: id.into(),
//!     weight: 1,
//!     healthy: true,
//!     locality: Some(zone.into()),
//! };
//! let endpoints = vec![
//!     endpoint("10.0.0.1:80", "zone-a"),
//!     endpoint("10.0.0.2:80", "zone-a"),
//!     endpoint("10.0.1.1:80", "zone-b"),
//! ];
//! let mut b = Balancer::new(Policy::RoundRobin, endpoints)
//!     .with_locality_weights([("zone-a", 3), ("zone-b", 1)]);
//! let mut to_b = 0;
//! for _ in 0..400 {
//!     to_b += usize::from(b.pick(PickInput::default()) == Some(2));
//! }
//! assert_eq!(to_b, 100, "zone-b's one endpoint gets a quarter, not a third");
//! ```

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
    /// The endpoint's locality (zone); used only with [`Balancer::with_locality_weights`].
    pub locality: Option<String>,
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
    /// The weighted localities; empty when localities are not weighted.
    localities: Vec<Locality>,
    /// Per endpoint, its index in `localities` (`NO_LOCALITY` when it has none with a weight).
    member: Vec<usize>,
}

/// One weighted locality.
#[derive(Debug, Clone)]
struct Locality {
    /// The configured weight.
    weight: u32,
    /// The weight scaled by availability, recomputed when health changes.
    effective: u64,
    /// Smooth round robin's current weight.
    current: i64,
}

/// Marks an endpoint outside every weighted locality.
const NO_LOCALITY: usize = usize::MAX;
/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING_PERCENT: u64 = 140;

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
            localities: Vec::new(),
            member: Vec::new(),
        };
        b.rebuild();
        b
    }

    /// Weights localities: each pick chooses a locality first (see the module docs), then an
    /// endpoint of it with the policy. `weights` maps locality names to weights; endpoints
    /// whose locality is missing from it (or who have none) get no traffic. Consistent-hash
    /// policies ignore this.
    pub fn with_locality_weights<S: Into<String>>(
        mut self,
        weights: impl IntoIterator<Item = (S, u32)>,
    ) -> Self {
        let mut names: Vec<String> = Vec::new();
        self.localities.clear();
        for (name, weight) in weights {
            names.push(name.into());
            self.localities.push(Locality {
                weight,
                effective: 0,
                current: 0,
            });
        }
        self.member = self
            .endpoints
            .iter()
            .map(|e| {
                e.locality
                    .as_deref()
                    .and_then(|l| names.iter().position(|n| n == l))
                    .unwrap_or(NO_LOCALITY)
            })
            .collect();
        self.rebuild();
        self
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
        if !self.localities.is_empty() {
            self.weigh_localities();
        }
    }

    /// Envoy's effective locality weight: `weight * min(100, 140 * healthy / endpoints)`.
    fn weigh_localities(&mut self) {
        let mut counts = vec![(0u64, 0u64); self.localities.len()];
        for (e, &l) in self.endpoints.iter().zip(&self.member) {
            if let Some((healthy, total)) = counts.get_mut(l) {
                *healthy += u64::from(e.healthy);
                *total += 1;
            }
        }
        for (loc, (healthy, total)) in self.localities.iter_mut().zip(counts) {
            let availability = (OVERPROVISIONING_PERCENT * healthy / total.max(1)).min(100);
            loc.effective = u64::from(loc.weight) * availability;
            if loc.effective == 0 {
                loc.current = 0;
            }
        }
    }

    /// The endpoint index for one request; `None` when no endpoint is healthy (or, with
    /// locality weights, no locality with a weight has a healthy endpoint).
    pub fn pick(&mut self, input: PickInput<'_>) -> Option<usize> {
        if !self.endpoints.iter().any(|e| e.healthy) {
            return None;
        }
        let hashing = matches!(self.policy, Policy::RingHash | Policy::Maglev);
        let scope = if self.localities.is_empty() || hashing {
            None
        } else {
            Some(self.pick_locality()?)
        };
        match (self.policy, input.hash) {
            (Policy::RoundRobin, _) => self.round_robin(scope),
            (Policy::Random, _) => self.weighted_random(input.random, scope),
            (Policy::LeastRequest, _) => self.least_request(input, scope),
            (Policy::RingHash, Some(h)) => self.ring_lookup(h),
            (Policy::Maglev, Some(h)) => self
                .table
                .get(h as usize % self.table.len().max(1))
                .copied(),
            (Policy::RingHash | Policy::Maglev, None) => self.weighted_random(input.random, None),
        }
    }

    /// Smooth weighted round robin over the localities' effective weights.
    fn pick_locality(&mut self) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..self.localities.len() {
            let effective = self.localities[i].effective;
            if effective == 0 {
                continue;
            }
            // At most u32::MAX * 100: fits.
            let w = i64::try_from(effective).unwrap_or(i64::MAX / 4);
            self.localities[i].current += w;
            total += w;
            if best.is_none_or(|b| self.localities[i].current > self.localities[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        self.localities[b].current -= total;
        Some(b)
    }

    fn round_robin(&mut self, scope: Option<usize>) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            if !e.healthy || !in_scope(&self.member, i, scope) {
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

    fn weighted_random(&self, random: u64, scope: Option<usize>) -> Option<usize> {
        let total: u64 = self.eligible(scope).map(|(_, e)| u64::from(e.weight)).sum();
        let mut point = random % total.max(1);
        for (i, e) in self.eligible(scope) {
            let w = u64::from(e.weight);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        None
    }

    fn least_request(&self, input: PickInput<'_>, scope: Option<usize>) -> Option<usize> {
        let a = self.weighted_random(input.random, scope)?;
        let b =
            self.weighted_random(input.random.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15, scope)?;
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

    /// Healthy endpoints in locality `scope` (all healthy ones for `None`).
    fn eligible(&self, scope: Option<usize>) -> impl Iterator<Item = (usize, &Endpoint)> {
        self.healthy()
            .filter(move |(i, _)| in_scope(&self.member, *i, scope))
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

/// Whether endpoint `i` belongs to locality `scope` (every endpoint does for `None`).
fn in_scope(member: &[usize], i: usize, scope: Option<usize>) -> bool {
    scope.is_none_or(|l| member.get(i) == Some(&l))
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
    use std::collections::BTreeMap;

    use super::*;

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                id: format!("10.0.0.{i}:9000"),
                weight: *w,
                healthy: true,
                locality: None,
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

    // === locality weights ===

    /// Endpoints `(zone, weight)`, ids `10.0.<n>.<i>:9000`.
    fn zoned(zones: &[(&str, u32)]) -> Vec<Endpoint> {
        zones
            .iter()
            .enumerate()
            .map(|(i, (zone, w))| Endpoint {
                id: format!("10.0.{}.{i}:9000", zone.len()),
                weight: *w,
                healthy: true,
                locality: Some((*zone).to_owned()),
            })
            .collect()
    }

    const NON_HASH: [Policy; 3] = [Policy::RoundRobin, Policy::Random, Policy::LeastRequest];

    /// Picks per locality name over `n` requests.
    fn zone_counts(b: &mut Balancer, n: u64) -> BTreeMap<String, u64> {
        let mut c = BTreeMap::new();
        for i in 0..n {
            let p = b
                .pick(PickInput {
                    random: mix(i),
                    hash: None,
                    active: &[],
                })
                .expect("healthy");
            let zone = b.endpoints()[p].locality.clone().expect("zoned");
            *c.entry(zone).or_insert(0) += 1;
        }
        c
    }

    fn share(c: &BTreeMap<String, u64>, zone: &str) -> f64 {
        let total: u64 = c.values().sum();
        c.get(zone).copied().unwrap_or(0) as f64 / total as f64
    }

    #[test]
    fn locality_weights_split_traffic_whatever_the_endpoint_counts() {
        // Three endpoints in zone-a, one (heavier) in zone-b: without locality weights
        // zone-b would get 2/5; with them it gets 20%.
        let eps = zoned(&[("zone-a", 1), ("zone-a", 1), ("zone-a", 1), ("zone-b", 2)]);
        for policy in NON_HASH {
            let mut b = Balancer::new(policy, eps.clone())
                .with_locality_weights([("zone-a", 80), ("zone-b", 20)]);
            let mut per_endpoint = [0u64; 4];
            for i in 0..10_000 {
                let p = b
                    .pick(PickInput {
                        random: mix(i),
                        hash: None,
                        active: &[],
                    })
                    .expect("healthy");
                per_endpoint[p] += 1;
            }
            let a = per_endpoint[..3].iter().sum::<u64>() as f64 / 10_000.0;
            assert!((0.78..=0.82).contains(&a), "{policy:?}: {per_endpoint:?}");
            // Inside zone-a the policy spreads evenly.
            for n in &per_endpoint[..3] {
                assert!((2400..=2940).contains(n), "{policy:?}: {per_endpoint:?}");
            }
        }
        // Round robin over localities is exact.
        let mut b = Balancer::new(Policy::RoundRobin, eps)
            .with_locality_weights([("zone-a", 80), ("zone-b", 20)]);
        let c = zone_counts(&mut b, 1000);
        assert_eq!(c["zone-a"], 800);
        assert_eq!(c["zone-b"], 200);
    }

    #[test]
    fn an_unhealthy_locality_gives_its_share_to_the_others() {
        let eps = zoned(&[("a", 1), ("a", 1), ("b", 1), ("b", 1), ("c", 1)]);
        for policy in NON_HASH {
            let mut b = Balancer::new(policy, eps.clone()).with_locality_weights([
                ("a", 50),
                ("b", 30),
                ("c", 20),
            ]);
            b.set_healthy(2, false);
            b.set_healthy(3, false);
            let c = zone_counts(&mut b, 7000);
            assert!(!c.contains_key("b"), "{policy:?}: {c:?}");
            // a and c keep their ratio: 50/70 and 20/70.
            let a = share(&c, "a");
            assert!((0.69..=0.74).contains(&a), "{policy:?}: {c:?}");

            // Back in service, b gets its share again.
            b.set_healthy(2, true);
            b.set_healthy(3, true);
            let c = zone_counts(&mut b, 10_000);
            assert!((0.28..=0.32).contains(&share(&c, "b")), "{policy:?}: {c:?}");

            // No weighted locality with a healthy endpoint: nothing to pick.
            for i in 0..5 {
                b.set_healthy(i, false);
            }
            assert_eq!(b.pick(PickInput::default()), None, "{policy:?}");
        }
    }

    #[test]
    fn partial_health_scales_a_locality_with_envoys_overprovisioning_factor() {
        // Envoy's documented example: X weight 1, Y weight 2, Y fully healthy. X keeps its third
        // down to 72% healthy; at 50% it is 1 * 70 against 2 * 100 (26%); at 20%, 28 / 228.
        let mut zones = vec![("x", 1); 10];
        zones.extend([("y", 1); 10]);
        let mut b = Balancer::new(Policy::RoundRobin, zoned(&zones))
            .with_locality_weights([("x", 1), ("y", 2)]);
        for (healthy_in_x, x_percent) in [(10, 33), (8, 33), (5, 26), (2, 12), (0, 0)] {
            for i in 0..10 {
                b.set_healthy(i, i < healthy_in_x);
            }
            let c = zone_counts(&mut b, 10_000);
            let x = (share(&c, "x") * 100.0).round() as u64;
            assert_eq!(x, x_percent, "{healthy_in_x}/10 healthy in x: {c:?}");
        }
    }

    #[test]
    fn a_single_locality_behaves_like_no_locality_weights() {
        let eps = zoned(&[("a", 5), ("a", 1), ("a", 1)]);
        for policy in NON_HASH {
            let mut plain = Balancer::new(policy, eps.clone());
            let mut zoned = Balancer::new(policy, eps.clone()).with_locality_weights([("a", 7)]);
            for b in [&mut plain, &mut zoned] {
                b.set_healthy(1, false);
                b.set_healthy(1, true);
            }
            let active = [3u32, 0, 1];
            for i in 0..1000 {
                let input = PickInput {
                    random: mix(i),
                    hash: None,
                    active: &active,
                };
                assert_eq!(plain.pick(input), zoned.pick(input), "{policy:?} pick {i}");
            }
        }
    }

    #[test]
    fn endpoints_outside_weighted_localities_get_nothing() {
        let mut eps = zoned(&[("a", 1), ("b", 1)]);
        eps.push(Endpoint {
            locality: None,
            ..eps[0].clone()
        });
        let mut b = Balancer::new(Policy::RoundRobin, eps).with_locality_weights([("a", 1)]);
        let c = counts(&mut b, 100, |_| PickInput::default());
        assert_eq!(c, vec![100, 0, 0]);
        b.set_healthy(0, false);
        assert_eq!(b.pick(PickInput::default()), None);
    }

    #[test]
    fn consistent_hashing_ignores_locality_weights() {
        let eps = zoned(&[("a", 1), ("a", 1), ("b", 1)]);
        for policy in [Policy::RingHash, Policy::Maglev] {
            let mut plain = Balancer::new(policy, eps.clone());
            let mut zoned =
                Balancer::new(policy, eps.clone()).with_locality_weights([("a", 1), ("b", 99)]);
            for i in 0..500 {
                let input = PickInput {
                    random: mix(i),
                    hash: Some(mix(i + 7)),
                    active: &[],
                };
                assert_eq!(plain.pick(input), zoned.pick(input), "{policy:?}");
            }
        }
    }
}
