//! Routes: configuration (shaped after Aeraki's MetaProtocol route configuration) and the
//! compiled [`Router`] that picks the first route whose metadata matchers all hold.
//!
//! ```
//! use meta_protocol_core::Metadata;
//! use meta_protocol_runtime::route::{RouteConfig, Router};
//!
//! let config: RouteConfig = serde_norway::from_str(r#"
//! name: demo
//! routes:
//!   - name: writes
//!     match:
//!       metadata:
//!         - { name: method, prefix: "set" }
//!     route:
//!       cluster: primary
//!   - name: reads
//!     route:
//!       weighted_clusters:
//!         - { name: replica-a, weight: 80 }
//!         - { name: replica-b, weight: 20 }
//! "#).unwrap();
//! let router = Router::new(&config).unwrap();
//!
//! let md: Metadata = [("method", "setUser")].into_iter().collect();
//! assert_eq!(router.route(&md).unwrap().name(), "writes");
//! let md: Metadata = [("method", "getUser")].into_iter().collect();
//! let route = router.route(&md).unwrap();
//! assert_eq!(route.cluster(0), "replica-a");
//! assert_eq!(route.cluster(99), "replica-b"); // random % 100 >= 80
//! ```

use std::sync::Arc;

use meta_protocol_core::{MetaValue, Metadata};
use regex::Regex;
use serde::{Deserialize, Serialize};

// === configuration ===

/// A named list of routes, tried in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The configuration's name (Aeraki: `<host>_<port>`).
    pub name: String,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// One route: when its matchers hold, where the request goes and what changes on the way.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The route's name, used in metrics and logs.
    pub name: String,
    /// What the request's metadata must look like; empty matches everything.
    #[serde(default, rename = "match")]
    pub matcher: MatchSpec,
    /// Where matching requests go.
    pub route: ActionSpec,
    /// Metadata set on the request before it is sent upstream.
    #[serde(default)]
    pub request_mutation: Vec<KeyValue>,
    /// Metadata set on the reply before it is sent downstream.
    #[serde(default)]
    pub response_mutation: Vec<KeyValue>,
}

/// The matchers of a route; all must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Matchers on metadata keys.
    #[serde(default)]
    pub metadata: Vec<MetadataMatcherSpec>,
}

/// A matcher on one metadata key. Exactly one of `exact`, `prefix`, `suffix`, `regex` and
/// `present` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataMatcherSpec {
    /// The metadata key.
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value ends with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The whole value matches this regular expression (RE2 syntax, as Envoy's `safe_regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The key is present (`true`) or absent (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Inverts the result. A missing key fails every value matcher, so an inverted value
    /// matcher holds for a missing key.
    #[serde(default)]
    pub invert: bool,
}

/// Where a route sends requests. Exactly one of `cluster` and `weighted_clusters` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// One cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A traffic split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// Metadata keys whose values feed consistent hashing (ring hash, maglev).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_policy: Vec<String>,
    /// Copies of matching requests sent, fire-and-forget, to other clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_mirror_policies: Vec<MirrorPolicy>,
}

/// One cluster of a traffic split.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// The cluster.
    pub name: String,
    /// Its share, relative to the other clusters' weights.
    pub weight: u32,
}

/// Mirroring of a percentage of requests to a cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorPolicy {
    /// The cluster that receives the copies.
    pub cluster: String,
    /// Percentage of requests mirrored, 0 to 100 (default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

/// A metadata key and the value to set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A route configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A matcher sets none or several of `exact`, `prefix`, `suffix`, `regex`, `present`.
    #[error(
        "routes[{route}].match.metadata[{index}] (`{name}`): set exactly one of exact, prefix, suffix, regex, present"
    )]
    MatcherKind {
        /// The route's name.
        route: String,
        /// The matcher's position.
        index: usize,
        /// The matcher's key.
        name: String,
    },
    /// A regular expression does not compile.
    #[error("routes[{route}].match.metadata[{index}].regex: {reason}")]
    BadRegex {
        /// The route's name.
        route: String,
        /// The matcher's position.
        index: usize,
        /// The regex engine's message.
        reason: String,
    },
    /// A route sets none or both of `cluster` and `weighted_clusters`.
    #[error("routes[{route}].route: set exactly one of cluster, weighted_clusters")]
    Destination {
        /// The route's name.
        route: String,
    },
    /// A traffic split whose weights add up to zero.
    #[error("routes[{route}].route.weighted_clusters: weights add up to 0")]
    ZeroWeight {
        /// The route's name.
        route: String,
    },
    /// A mirror percentage outside 0..=100.
    #[error(
        "routes[{route}].route.request_mirror_policies[{index}].percent: {percent} is not within 0-100"
    )]
    MirrorPercent {
        /// The route's name.
        route: String,
        /// The policy's position.
        index: usize,
        /// The rejected percentage.
        percent: String,
    },
    /// Two routes with the same name.
    #[error("routes[{0}]: the name is used twice")]
    DuplicateName(String),
    /// A route or a cluster without a name.
    #[error("routes[#{0}]: {1} must not be empty")]
    Empty(usize, &'static str),
}

// === compiled routes ===

/// Routes compiled for matching.
#[derive(Debug, Clone)]
pub struct Router {
    name: Arc<str>,
    routes: Vec<Route>,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    name: Arc<str>,
    matchers: Vec<Matcher>,
    clusters: Clusters,
    hash_policy: Vec<MetaValue>,
    mirrors: Vec<Mirror>,
    request_mutation: Vec<(MetaValue, MetaValue)>,
    response_mutation: Vec<(MetaValue, MetaValue)>,
}

#[derive(Debug, Clone)]
enum Clusters {
    One(Arc<str>),
    /// Clusters with their cumulative weights, and the total.
    Split(Vec<(Arc<str>, u64)>, u64),
}

/// A compiled mirror policy.
#[derive(Debug, Clone)]
pub struct Mirror {
    cluster: Arc<str>,
    /// Mirrored when `random % 1_000_000 < threshold`.
    threshold: u64,
}

#[derive(Debug, Clone)]
struct Matcher {
    key: String,
    test: Test,
    invert: bool,
}

#[derive(Debug, Clone)]
enum Test {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    Present(bool),
}

// === impl Router ===

impl Router {
    /// Compiles `config`.
    ///
    /// # Errors
    /// [`RouteError`] naming the route and field that is wrong.
    pub fn new(config: &RouteConfig) -> Result<Self, RouteError> {
        let mut routes: Vec<Route> = Vec::with_capacity(config.routes.len());
        for (i, spec) in config.routes.iter().enumerate() {
            let route = Route::new(i, spec)?;
            if routes.iter().any(|r| r.name == route.name) {
                return Err(RouteError::DuplicateName(spec.name.clone()));
            }
            routes.push(route);
        }
        Ok(Router {
            name: config.name.as_str().into(),
            routes,
        })
    }

    /// The configuration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first route whose matchers all hold for `md`.
    pub fn route(&self, md: &Metadata) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(md))
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

// === impl Route ===

impl Route {
    fn new(index: usize, spec: &RouteSpec) -> Result<Self, RouteError> {
        let route = || spec.name.clone();
        if spec.name.is_empty() {
            return Err(RouteError::Empty(index, "name"));
        }
        let matchers = spec
            .matcher
            .metadata
            .iter()
            .enumerate()
            .map(|(i, m)| Matcher::new(&spec.name, i, m))
            .collect::<Result<_, _>>()?;
        let action = &spec.route;
        let clusters = match (&action.cluster, action.weighted_clusters.as_slice()) {
            (Some(c), []) if !c.is_empty() => Clusters::One(c.as_str().into()),
            (Some(_), []) => return Err(RouteError::Empty(index, "route.cluster")),
            (None, split) if !split.is_empty() => {
                let mut total = 0u64;
                let mut cumulative = Vec::with_capacity(split.len());
                for w in split {
                    if w.name.is_empty() {
                        return Err(RouteError::Empty(index, "weighted_clusters[].name"));
                    }
                    total += u64::from(w.weight);
                    cumulative.push((Arc::<str>::from(w.name.as_str()), total));
                }
                if total == 0 {
                    return Err(RouteError::ZeroWeight { route: route() });
                }
                Clusters::Split(cumulative, total)
            }
            _ => return Err(RouteError::Destination { route: route() }),
        };
        let mirrors = action
            .request_mirror_policies
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if !(0.0..=100.0).contains(&m.percent) {
                    return Err(RouteError::MirrorPercent {
                        route: route(),
                        index: i,
                        percent: m.percent.to_string(),
                    });
                }
                Ok(Mirror {
                    cluster: m.cluster.as_str().into(),
                    threshold: (m.percent * 10_000.0).round() as u64,
                })
            })
            .collect::<Result<_, _>>()?;
        let pairs = |kvs: &[KeyValue]| {
            kvs.iter()
                .map(|kv| {
                    (
                        MetaValue::from(kv.key.clone()),
                        MetaValue::from(kv.value.clone()),
                    )
                })
                .collect()
        };
        Ok(Route {
            name: spec.name.as_str().into(),
            matchers,
            clusters,
            hash_policy: action
                .hash_policy
                .iter()
                .map(|k| MetaValue::from(k.clone()))
                .collect(),
            mirrors,
            request_mutation: pairs(&spec.request_mutation),
            response_mutation: pairs(&spec.response_mutation),
        })
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when every matcher holds for `md`.
    pub fn matches(&self, md: &Metadata) -> bool {
        self.matchers.iter().all(|m| m.matches(md))
    }

    /// The cluster for a request, given a uniformly random number (used only by traffic
    /// splits).
    pub fn cluster(&self, random: u64) -> &str {
        match &self.clusters {
            Clusters::One(c) => c,
            Clusters::Split(split, total) => {
                let point = random % total;
                let i = split.partition_point(|(_, upto)| *upto <= point);
                &split[i.min(split.len() - 1)].0
            }
        }
    }

    /// Every cluster the route may send to (mirrors excluded).
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        let (one, split) = match &self.clusters {
            Clusters::One(c) => (Some(&**c), &[][..]),
            Clusters::Split(s, _) => (None, s.as_slice()),
        };
        one.into_iter().chain(split.iter().map(|(c, _)| &**c))
    }

    /// The consistent-hash key of a request: a hash of the values of the hash-policy keys
    /// (absent keys hash as empty). `None` when the route has no hash policy.
    pub fn hash_key(&self, md: &Metadata) -> Option<u64> {
        if self.hash_policy.is_empty() {
            return None;
        }
        let mut h = Fnv1a::new();
        for key in &self.hash_policy {
            h.write(md.get(key).map_or(&[][..], str::as_bytes));
            h.write(&[0xff]);
        }
        Some(h.finish())
    }

    /// The clusters a request is mirrored to, given a uniformly random number.
    pub fn mirrors(&self, random: u64) -> impl Iterator<Item = &str> {
        let point = random % 1_000_000;
        self.mirrors
            .iter()
            .filter(move |m| point < m.threshold)
            .map(|m| &*m.cluster)
    }

    /// Applies the request mutation to `md`.
    pub fn mutate_request(&self, md: &mut Metadata) {
        for (k, v) in &self.request_mutation {
            md.insert(k.clone(), v.clone());
        }
    }

    /// Applies the response mutation to `md`.
    pub fn mutate_response(&self, md: &mut Metadata) {
        for (k, v) in &self.response_mutation {
            md.insert(k.clone(), v.clone());
        }
    }
}

impl Mirror {
    /// The mirror's cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

/// Compiled metadata matchers outside a route (rate-limit conditions and the like): all must
/// hold, as a route's.
#[derive(Debug, Clone)]
pub struct MatchSet(Vec<Matcher>);

impl MatchSet {
    /// Compiles `spec`; `context` names it in errors (as a route name does).
    ///
    /// # Errors
    /// [`RouteError::MatcherKind`] or [`RouteError::BadRegex`] for a wrong matcher.
    pub fn new(context: &str, spec: &MatchSpec) -> Result<Self, RouteError> {
        spec.metadata
            .iter()
            .enumerate()
            .map(|(i, m)| Matcher::new(context, i, m))
            .collect::<Result<_, _>>()
            .map(MatchSet)
    }

    /// True when every matcher holds for `md` (an empty set always holds).
    pub fn matches(&self, md: &Metadata) -> bool {
        self.0.iter().all(|m| m.matches(md))
    }
}

// === impl Matcher ===

impl Matcher {
    fn new(route: &str, index: usize, spec: &MetadataMatcherSpec) -> Result<Self, RouteError> {
        let kinds = [
            spec.exact.is_some(),
            spec.prefix.is_some(),
            spec.suffix.is_some(),
            spec.regex.is_some(),
            spec.present.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(RouteError::MatcherKind {
                route: route.to_owned(),
                index,
                name: spec.name.clone(),
            });
        }
        let test = if let Some(v) = &spec.exact {
            Test::Exact(v.clone())
        } else if let Some(v) = &spec.prefix {
            Test::Prefix(v.clone())
        } else if let Some(v) = &spec.suffix {
            Test::Suffix(v.clone())
        } else if let Some(v) = &spec.regex {
            // Anchored: the whole value must match, as Envoy's safe_regex.
            let re = Regex::new(&format!("^(?:{v})$")).map_err(|e| RouteError::BadRegex {
                route: route.to_owned(),
                index,
                reason: e.to_string(),
            })?;
            Test::Regex(re)
        } else {
            Test::Present(spec.present.unwrap_or(true))
        };
        Ok(Matcher {
            key: spec.name.clone(),
            test,
            invert: spec.invert,
        })
    }

    fn matches(&self, md: &Metadata) -> bool {
        let value = md.get(&self.key);
        let hit = match (&self.test, value) {
            (Test::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Test::Exact(s), Some(v)) => v.as_bytes() == s.as_bytes(),
            (Test::Prefix(s), Some(v)) => v.as_bytes().starts_with(s.as_bytes()),
            (Test::Suffix(s), Some(v)) => v.as_bytes().ends_with(s.as_bytes()),
            (Test::Regex(re), Some(v)) => re.is_match(v),
        };
        hit != self.invert
    }
}

/// 64-bit FNV-1a: stable across runs and hosts, so every proxy hashes a key the same way.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&'static str, &'static str)]) -> Metadata {
        pairs.iter().copied().collect()
    }

    fn matcher(yaml: &str) -> Matcher {
        let spec: MetadataMatcherSpec = serde_norway::from_str(yaml).expect("yaml");
        Matcher::new("r", 0, &spec).expect("valid")
    }

    #[test]
    fn each_matcher_kind_and_inversion() {
        let m = md(&[("method", "sayHello"), ("version", "v1")]);
        assert!(matcher("{name: method, exact: sayHello}").matches(&m));
        assert!(!matcher("{name: method, exact: sayhello}").matches(&m));
        assert!(matcher("{name: method, prefix: say}").matches(&m));
        assert!(matcher("{name: method, suffix: Hello}").matches(&m));
        assert!(matcher("{name: method, regex: 'say[A-Z].*'}").matches(&m));
        assert!(
            !matcher("{name: method, regex: 'Hello'}").matches(&m),
            "anchored"
        );
        assert!(matcher("{name: version, present: true}").matches(&m));
        assert!(matcher("{name: group, present: false}").matches(&m));
        assert!(matcher("{name: method, exact: bye, invert: true}").matches(&m));
        assert!(
            !matcher("{name: group, exact: x}").matches(&m),
            "missing key"
        );
        assert!(
            matcher("{name: group, exact: x, invert: true}").matches(&m),
            "inverted on a missing key"
        );
    }

    #[test]
    fn bad_configs_name_the_route_and_field() {
        let cfg = |yaml: &str| -> RouteError {
            let c: RouteConfig = serde_norway::from_str(yaml).expect("yaml");
            Router::new(&c).expect_err("invalid")
        };
        let e = cfg(
            "name: x\nroutes: [{name: a, match: {metadata: [{name: m}]}, route: {cluster: c}}]",
        );
        assert_eq!(
            e.to_string(),
            "routes[a].match.metadata[0] (`m`): set exactly one of exact, prefix, suffix, regex, present"
        );
        let e = cfg(
            "name: x\nroutes: [{name: a, match: {metadata: [{name: m, regex: '('}]}, route: {cluster: c}}]",
        );
        assert!(
            e.to_string()
                .starts_with("routes[a].match.metadata[0].regex:"),
            "{e}"
        );
        let e = cfg("name: x\nroutes: [{name: a, route: {}}]");
        assert_eq!(
            e.to_string(),
            "routes[a].route: set exactly one of cluster, weighted_clusters"
        );
        let e =
            cfg("name: x\nroutes: [{name: a, route: {weighted_clusters: [{name: b, weight: 0}]}}]");
        assert_eq!(e, RouteError::ZeroWeight { route: "a".into() });
        let e = cfg(
            "name: x\nroutes: [{name: a, route: {cluster: c}}, {name: a, route: {cluster: d}}]",
        );
        assert_eq!(e, RouteError::DuplicateName("a".into()));
        let e = cfg(
            "name: x\nroutes: [{name: a, route: {cluster: c, request_mirror_policies: [{cluster: m, percent: 101}]}}]",
        );
        assert!(matches!(e, RouteError::MirrorPercent { .. }), "{e}");
        let unknown = serde_norway::from_str::<RouteConfig>("name: x\nroutez: []");
        assert!(
            unknown
                .expect_err("unknown key")
                .to_string()
                .contains("unknown field `routez`")
        );
    }

    #[test]
    fn first_match_wins_and_unmatched_is_none() {
        let c: RouteConfig = serde_norway::from_str(
            "name: x\nroutes:\n- {name: a, match: {metadata: [{name: m, exact: '1'}]}, route: {cluster: ca}}\n- {name: b, match: {metadata: [{name: m, prefix: ''}]}, route: {cluster: cb}}",
        )
        .expect("yaml");
        let r = Router::new(&c).expect("valid");
        assert_eq!(r.route(&md(&[("m", "1")])).map(Route::name), Some("a"));
        assert_eq!(r.route(&md(&[("m", "2")])).map(Route::name), Some("b"));
        assert!(r.route(&md(&[])).is_none());
    }

    #[test]
    fn weighted_split_follows_the_weights_exactly_over_the_range() {
        let c: RouteConfig = serde_norway::from_str(
            "name: x\nroutes: [{name: a, route: {weighted_clusters: [{name: v1, weight: 80}, {name: v2, weight: 20}, {name: v3, weight: 0}]}}]",
        )
        .expect("yaml");
        let r = Router::new(&c).expect("valid");
        let route = &r.routes()[0];
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..1000u64 {
            *counts.entry(route.cluster(i)).or_insert(0) += 1;
        }
        assert_eq!(counts.get("v1"), Some(&800));
        assert_eq!(counts.get("v2"), Some(&200));
        assert_eq!(counts.get("v3"), None, "zero weight gets nothing");
    }

    #[test]
    fn hash_key_depends_only_on_the_policy_keys() {
        let c: RouteConfig = serde_norway::from_str(
            "name: x\nroutes: [{name: a, route: {cluster: c, hash_policy: [user]}}]",
        )
        .expect("yaml");
        let r = Router::new(&c).expect("valid");
        let route = &r.routes()[0];
        let a = route.hash_key(&md(&[("user", "1"), ("x", "1")]));
        let b = route.hash_key(&md(&[("user", "1"), ("x", "2")]));
        let c2 = route.hash_key(&md(&[("user", "2")]));
        assert_eq!(a, b);
        assert_ne!(a, c2);
    }

    #[test]
    fn mirrors_by_percentage_and_mutations_mark_the_metadata() {
        let c: RouteConfig = serde_norway::from_str(
            "name: x\nroutes: [{name: a, route: {cluster: c, request_mirror_policies: [{cluster: shadow, percent: 25}]}, request_mutation: [{key: k, value: v}]}]",
        )
        .expect("yaml");
        let r = Router::new(&c).expect("valid");
        let route = &r.routes()[0];
        let mirrored = (0..1_000_000u64)
            .step_by(1000)
            .filter(|i| route.mirrors(*i).next().is_some())
            .count();
        assert_eq!(mirrored, 250);
        let mut m = md(&[]);
        route.mutate_request(&mut m);
        assert_eq!(m.get_str("k"), Some("v"));
        assert!(m.is_modified());
    }
}
