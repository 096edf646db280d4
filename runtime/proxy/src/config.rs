//! The proxy's YAML configuration (documented in full in `docs/configuration.md`).
//!
//! Loading is two steps: serde reads the YAML strictly (unknown keys are errors, reported with
//! their path, e.g. `listeners[0].codec.nmae`), then [`Config::validate`] checks what types
//! cannot: codec names and options, route references to clusters, addresses, weights.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use meta_protocol_core::{CodecConfig, CodecRegistry};
use meta_protocol_runtime::duration;
use meta_protocol_runtime::lb::Policy;
use meta_protocol_runtime::ratelimit::{LocalRateLimit, LocalRateLimitSpec};
use meta_protocol_runtime::resilience::{BreakerLimits, OutlierConfig, RetryPolicy};
use meta_protocol_runtime::route::{RouteConfig, Router};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the admin endpoint (stats, config dump) listens; none when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Downstream listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Upstream clusters.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
}

/// The admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port`.
    pub address: String,
}

/// One listener: an address, a protocol, and its routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The listener's name, used in stats and logs.
    pub name: String,
    /// `ip:port` to listen on.
    pub address: String,
    /// The protocol spoken on this listener and to its clusters.
    pub codec: CodecSection,
    /// Routes, inline. Exactly one of `route_config` and `rds` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_config: Option<RouteConfig>,
    /// Routes from a control plane over RDS (MetaRDS). Exactly one of `route_config` and
    /// `rds` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<RdsConfig>,
    /// Most downstream connections at once; more are refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A downstream connection with nothing in flight is closed after this long.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Timeout for each request when its route sets none.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Retry policy for the listener's requests.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// Filters every request passes before routing, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterConfig>,
}

/// One listener filter; exactly one kind is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A local rate limit: token buckets for the listener's requests (shared by its
    /// connections), chosen by metadata conditions; over the limit, the codec's *over limit*
    /// error reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ratelimit: Option<LocalRateLimitSpec>,
}

/// Where a listener's routes come from when they are not inline: an RDS subscription, shaped
/// after Envoy's `Rds` (`config_source` + `route_config_name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsConfig {
    /// The management server.
    pub config_source: ConfigSource,
    /// The route configuration subscribed to (Aeraki names it `<host>_<port>`).
    pub route_config_name: String,
}

/// A management server speaking `envoy.service.route.v3.RouteDiscoveryService`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSource {
    /// `host:port` of its plaintext gRPC endpoint (e.g. `istiod.istio-system:15010`).
    pub address: String,
}

/// A codec and its options, as in [`CodecConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecSection {
    /// The registered codec name.
    pub name: String,
    /// Largest frame in bytes (codec default when absent).
    #[serde(default)]
    pub max_frame_size: Option<usize>,
    /// Codec-specific options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl CodecSection {
    /// As the registry wants it.
    pub fn to_codec_config(&self) -> CodecConfig {
        CodecConfig {
            name: self.name.clone(),
            max_frame_size: self.max_frame_size,
            options: self.options.clone(),
        }
    }
}

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name, referenced by routes.
    pub name: String,
    /// Static endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// How requests are spread over the endpoints.
    #[serde(default)]
    pub lb_policy: Policy,
    /// Locality (zone) weights: each request picks a locality by weight first, then an
    /// endpoint of it with `lb_policy`. Empty: localities are not weighted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locality_weights: BTreeMap<String, u32>,
    /// Connection attempts fail after this long.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Upstream connections with nothing in flight are closed after this long.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Circuit-breaker thresholds.
    #[serde(default)]
    pub circuit_breakers: BreakerLimits,
    /// Outlier detection; none when absent.
    #[serde(default)]
    pub outlier_detection: Option<OutlierConfig>,
    /// Connection pool.
    #[serde(default)]
    pub pool: PoolConfig,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ip:port`.
    pub address: String,
    /// Relative weight (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Locality (zone) label; required when the cluster sets `locality_weights`.
    #[serde(default)]
    pub locality: Option<String>,
}

/// How requests share upstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// `multiplexed`: many downstream connections share a few upstream connections (the proxy
    /// rewrites request ids; ordered protocols pipeline in order). `exclusive`: one request at
    /// a time per upstream connection.
    pub mode: PoolMode,
    /// Upstream connections per endpoint.
    pub connections_per_endpoint: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Multiplexed,
            connections_per_endpoint: 2,
        }
    }
}

/// See [`PoolConfig::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Shared connections, ids rewritten.
    Multiplexed,
    /// One request at a time per connection.
    Exclusive,
}

fn one() -> u32 {
    1
}
fn default_max_connections() -> usize {
    10_000
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A configuration that cannot be used; the message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where in the configuration, e.g. `listeners[0].codec.name`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, message: impl ToString) -> Self {
        ConfigError {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn load(path: &Path, codecs: &CodecRegistry) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at(path.display().to_string(), e))?;
        Self::parse(&text, codecs)
    }

    /// Parses and validates YAML text.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn parse(text: &str, codecs: &CodecRegistry) -> Result<Self, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::at(if path == "." { "(top)".into() } else { path }, e.inner())
        })?;
        config.validate(codecs)?;
        Ok(config)
    }

    /// Checks everything the types do not.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn validate(&self, codecs: &CodecRegistry) -> Result<(), ConfigError> {
        if let Some(admin) = &self.admin {
            parse_addr("admin.address", &admin.address)?;
        }
        let mut clusters = BTreeSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let at = |k: &str| format!("clusters[{i}].{k}");
            if c.name.is_empty() {
                return Err(ConfigError::at(at("name"), "must not be empty"));
            }
            if !clusters.insert(c.name.as_str()) {
                return Err(ConfigError::at(
                    at("name"),
                    format!("`{}` is defined twice", c.name),
                ));
            }
            if c.endpoints.is_empty() {
                return Err(ConfigError::at(
                    at("endpoints"),
                    "needs at least one endpoint",
                ));
            }
            for (j, e) in c.endpoints.iter().enumerate() {
                parse_addr(&at(&format!("endpoints[{j}].address")), &e.address)?;
                if e.weight == 0 {
                    return Err(ConfigError::at(
                        at(&format!("endpoints[{j}].weight")),
                        "must be at least 1",
                    ));
                }
            }
            validate_localities(c, &at)?;
            if c.pool.connections_per_endpoint == 0 {
                return Err(ConfigError::at(
                    at("pool.connections_per_endpoint"),
                    "must be at least 1",
                ));
            }
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::at("listeners", "needs at least one listener"));
        }
        let mut names = BTreeSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = |k: &str| format!("listeners[{i}].{k}");
            if !names.insert(l.name.as_str()) {
                return Err(ConfigError::at(
                    at("name"),
                    format!("`{}` is defined twice", l.name),
                ));
            }
            parse_addr(&at("address"), &l.address)?;
            codecs
                .build(&l.codec.to_codec_config())
                .map_err(|e| ConfigError::at(at("codec"), e))?;
            for (f, filter) in l.filters.iter().enumerate() {
                let Some(spec) = &filter.local_ratelimit else {
                    return Err(ConfigError::at(
                        at(&format!("filters[{f}]")),
                        "set one filter: local_ratelimit",
                    ));
                };
                LocalRateLimit::new(spec, std::time::Instant::now()).map_err(|e| {
                    ConfigError::at(
                        at(&format!("filters[{f}].local_ratelimit.{}", e.field)),
                        e.reason,
                    )
                })?;
            }
            match (&l.route_config, &l.rds) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        at("rds"),
                        "set exactly one of route_config and rds, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::at(
                        at("route_config"),
                        "is required unless rds is set (set exactly one of route_config and rds)",
                    ));
                }
                (Some(routes), None) => {
                    let router =
                        Router::new(routes).map_err(|e| ConfigError::at(at("route_config"), e))?;
                    for (r, route) in router.routes().iter().enumerate() {
                        for cluster in route.clusters() {
                            if !clusters.contains(cluster) {
                                return Err(ConfigError::at(
                                    at(&format!("route_config.routes[{r}]")),
                                    format!(
                                        "route `{}` names cluster `{cluster}`, which is not defined",
                                        route.name()
                                    ),
                                ));
                            }
                        }
                    }
                }
                (None, Some(rds)) => {
                    if rds.route_config_name.is_empty() {
                        return Err(ConfigError::at(
                            at("rds.route_config_name"),
                            "must not be empty",
                        ));
                    }
                    check_host_port(&at("rds.config_source.address"), &rds.config_source.address)?;
                }
            }
            if l.max_connections == 0 {
                return Err(ConfigError::at(at("max_connections"), "must be at least 1"));
            }
            for (key, d) in [
                ("idle_timeout", l.idle_timeout),
                ("request_timeout", l.request_timeout),
            ] {
                if d.is_zero() {
                    return Err(ConfigError::at(at(key), "must be longer than 0"));
                }
            }
        }
        Ok(())
    }
}

/// Locality weights need a balancing policy that can honour them, a positive total, and every
/// endpoint in exactly one weighted locality, each of which has an endpoint.
fn validate_localities(c: &ClusterConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let weights = &c.locality_weights;
    if weights.is_empty() {
        return Ok(());
    }
    if matches!(c.lb_policy, Policy::RingHash | Policy::Maglev) {
        return Err(ConfigError::at(
            at("locality_weights"),
            "cannot be used with lb_policy `ring_hash` or `maglev` (consistent hashing does \
             not weight localities); use round_robin, random or least_request",
        ));
    }
    if weights.values().all(|w| *w == 0) {
        return Err(ConfigError::at(
            at("locality_weights"),
            "the total weight is zero; at least one locality needs a positive weight",
        ));
    }
    if weights
        .values()
        .try_fold(0u32, |sum, w| sum.checked_add(*w))
        .is_none()
    {
        return Err(ConfigError::at(
            at("locality_weights"),
            "the weights add up to more than 4294967295",
        ));
    }
    for (j, e) in c.endpoints.iter().enumerate() {
        let key = at(&format!("endpoints[{j}].locality"));
        match &e.locality {
            None => {
                return Err(ConfigError::at(
                    key,
                    "is required when the cluster sets locality_weights",
                ));
            }
            Some(l) if !weights.contains_key(l) => {
                return Err(ConfigError::at(
                    key,
                    format!("`{l}` has no weight in locality_weights"),
                ));
            }
            Some(_) => {}
        }
    }
    for name in weights.keys() {
        if !c
            .endpoints
            .iter()
            .any(|e| e.locality.as_ref() == Some(name))
        {
            return Err(ConfigError::at(
                at(&format!("locality_weights.{name}")),
                format!("no endpoint has locality `{name}`"),
            ));
        }
    }
    Ok(())
}

/// `host:port` with a DNS name or an IP address (IPv6 in brackets) and a non-zero port.
fn check_host_port(path: &str, s: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::at(path, format!("`{s}` is not a host:port address"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && !host
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'));
    match port.parse::<u16>() {
        Ok(p) if p != 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

fn parse_addr(path: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::at(path, format!("`{s}` is not an ip:port address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> CodecRegistry {
        crate::builtin_codecs()
    }

    const GOOD: &str = r#"
listeners:
  - name: in
    address: 127.0.0.1:7000
    codec: { name: minirpc }
    route_config:
      name: r
      routes:
        - name: all
          route: { cluster: backend }
clusters:
  - name: backend
    endpoints: [{ address: 127.0.0.1:7001 }]
"#;

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let c = Config::parse(GOOD, &registry()).expect("valid");
        assert_eq!(c.clusters[0].lb_policy, Policy::RoundRobin);
        assert_eq!(c.clusters[0].pool.mode, PoolMode::Multiplexed);
        assert_eq!(c.listeners[0].request_timeout, Duration::from_secs(15));
    }

    #[track_caller]
    fn error(yaml: &str) -> String {
        Config::parse(yaml, &registry())
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn errors_name_the_offending_key() {
        let e = error(&GOOD.replace("codec: { name: minirpc }", "codec: { nmae: minirpc }"));
        assert!(e.starts_with("listeners[0].codec"), "{e}");
        assert!(e.contains("unknown field `nmae`"), "{e}");

        let e = error(&GOOD.replace("name: minirpc", "name: grpc"));
        assert!(
            e.starts_with("listeners[0].codec: unknown codec `grpc`"),
            "{e}"
        );

        let e = error(&GOOD.replace("{ cluster: backend }", "{ cluster: nowhere }"));
        assert_eq!(
            e,
            "listeners[0].route_config.routes[0]: route `all` names cluster `nowhere`, which is not defined"
        );

        let e = error(&GOOD.replace("127.0.0.1:7001", "localhost"));
        assert_eq!(
            e,
            "clusters[0].endpoints[0].address: `localhost` is not an ip:port address"
        );

        let e = error(&GOOD.replace(
            "name: minirpc }",
            "name: minirpc, options: { depth: '3' } }",
        ));
        assert_eq!(
            e,
            "listeners[0].codec: codec `minirpc`: unknown option `depth`"
        );

        let e = error(&format!("{GOOD}    lb_policy: fastest\n"));
        assert!(e.starts_with("clusters[0].lb_policy"), "{e}");

        let e = error(&format!("{GOOD}    connect_timeout: 5 seconds\n"));
        assert!(e.starts_with("clusters[0].connect_timeout"), "{e}");

        let e = error(&GOOD.replace(
            "codec: { name: minirpc }",
            "codec: { name: minirpc }\n    idle_timeout: 0s",
        ));
        assert_eq!(e, "listeners[0].idle_timeout: must be longer than 0");
    }

    const ZONED: &str = r#"
listeners:
  - name: in
    address: 127.0.0.1:7000
    codec: { name: minirpc }
    route_config:
      name: r
      routes:
        - name: all
          route: { cluster: backend }
clusters:
  - name: backend
    locality_weights: { zone-a: 80, zone-b: 20 }
    endpoints:
      - { address: 127.0.0.1:7001, locality: zone-a }
      - { address: 127.0.0.1:7002, locality: zone-a }
      - { address: 127.0.0.1:7003, locality: zone-b }
"#;

    #[test]
    fn locality_weights_load_and_errors_name_the_key() {
        let c = Config::parse(ZONED, &registry()).expect("valid");
        assert_eq!(
            c.clusters[0].locality_weights,
            BTreeMap::from([("zone-a".to_owned(), 80), ("zone-b".to_owned(), 20)])
        );
        let with_policy = |p: &str| {
            ZONED.replace(
                "    locality_weights:",
                &format!("    lb_policy: {p}\n    locality_weights:"),
            )
        };
        for p in ["round_robin", "random", "least_request"] {
            Config::parse(&with_policy(p), &registry()).expect(p);
        }
        for p in ["ring_hash", "maglev"] {
            let e = error(&with_policy(p));
            assert!(
                e.starts_with("clusters[0].locality_weights: cannot be used with lb_policy"),
                "{e}"
            );
        }

        let e = error(&ZONED.replace("zone-b: 20 }", "zone-b: 20, zone-c: 5 }"));
        assert_eq!(
            e,
            "clusters[0].locality_weights.zone-c: no endpoint has locality `zone-c`"
        );

        let e = error(&ZONED.replace("zone-a: 80, zone-b: 20", "zone-a: 0, zone-b: 0"));
        assert_eq!(
            e,
            "clusters[0].locality_weights: the total weight is zero; at least one locality needs a positive weight"
        );
        // One zero weight is fine: that locality is drained.
        Config::parse(&ZONED.replace("zone-b: 20", "zone-b: 0"), &registry()).expect("drained");

        let e = error(&ZONED.replace("7003, locality: zone-b", "7003, locality: zone-x"));
        assert_eq!(
            e,
            "clusters[0].endpoints[2].locality: `zone-x` has no weight in locality_weights"
        );

        let e = error(&ZONED.replace("7002, locality: zone-a", "7002"));
        assert_eq!(
            e,
            "clusters[0].endpoints[1].locality: is required when the cluster sets locality_weights"
        );

        let e = error(&ZONED.replace("zone-b: 20", "zone-b: -1"));
        assert!(e.starts_with("clusters[0].locality_weights"), "{e}");

        let e = error(&ZONED.replace("zone-a: 80", "zone-a: 4294967295"));
        assert!(e.contains("add up to more than"), "{e}");

        // Locality labels alone (no weights) are accepted as before.
        let plain = ZONED.replace("    locality_weights: { zone-a: 80, zone-b: 20 }\n", "");
        let c = Config::parse(&plain, &registry()).expect("labels only");
        assert!(c.clusters[0].locality_weights.is_empty());
    }

    const RDS: &str = r#"
listeners:
  - name: in
    address: 127.0.0.1:7000
    codec: { name: minirpc }
    rds:
      config_source: { address: "istiod.istio-system:15010" }
      route_config_name: minirpc_7000
clusters:
  - name: backend
    endpoints: [{ address: 127.0.0.1:7001 }]
"#;

    #[test]
    fn rds_loads_and_exactly_one_route_source_is_required() {
        let c = Config::parse(RDS, &registry()).expect("valid");
        let rds = c.listeners[0].rds.as_ref().expect("rds");
        assert_eq!(rds.config_source.address, "istiod.istio-system:15010");
        assert_eq!(rds.route_config_name, "minirpc_7000");
        assert!(c.listeners[0].route_config.is_none());
        for address in ["127.0.0.1:15010", "[::1]:15010", "aeraki:15010"] {
            Config::parse(
                &RDS.replace("istiod.istio-system:15010", address),
                &registry(),
            )
            .expect(address);
        }

        let both = RDS.replace(
            "    rds:",
            "    route_config: { name: r, routes: [] }\n    rds:",
        );
        assert_eq!(
            error(&both),
            "listeners[0].rds: set exactly one of route_config and rds, not both"
        );
        let neither = GOOD.replace(
            "    route_config:\n      name: r\n      routes:\n        - name: all\n          route: { cluster: backend }\n",
            "",
        );
        assert_ne!(neither, GOOD);
        assert_eq!(
            error(&neither),
            "listeners[0].route_config: is required unless rds is set (set exactly one of route_config and rds)"
        );
        assert_eq!(
            error(&RDS.replace("minirpc_7000", "''")),
            "listeners[0].rds.route_config_name: must not be empty"
        );
        for bad in [
            "istiod",
            "istiod:",
            ":15010",
            "istiod:0",
            "http://istiod:15010",
        ] {
            let e = error(&RDS.replace("istiod.istio-system:15010", bad));
            assert_eq!(
                e,
                format!(
                    "listeners[0].rds.config_source.address: `{bad}` is not a host:port address"
                )
            );
        }
        let e = error(&RDS.replace("config_source: {", "config_source: { adress: x,"));
        assert!(e.starts_with("listeners[0].rds.config_source"), "{e}");
        assert!(e.contains("unknown field `adress`"), "{e}");
        let e = error(&RDS.replace("route_config_name:", "route_config_nmae:"));
        assert!(e.starts_with("listeners[0].rds"), "{e}");

        // The dump of an rds listener has no route_config key, and reads back the same.
        let dumped = serde_norway::to_string(&c).expect("dump");
        assert!(!dumped.contains("route_config:"), "{dumped}");
        assert_eq!(Config::parse(&dumped, &registry()).expect("reads back"), c);
    }
}
