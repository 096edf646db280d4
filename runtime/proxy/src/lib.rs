//! # meta-protocol-proxy
//!
//! The native tokio host of the MetaProtocol data plane: listeners decode requests with a
//! codec, the shared sans-IO core (`meta-protocol-runtime`) routes and balances them, and
//! upstream pools carry them to clusters, many downstream connections sharing a few upstream
//! connections. Configuration: `docs/configuration.md`.
//!
//! A listener's routes are inline in the YAML, or come from a control plane over RDS
//! (MetaRDS, `meta-protocol-xds`): each update replaces the listener's router the way a
//! SIGHUP reload does, without closing connections.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let codecs = meta_protocol_proxy::builtin_codecs();
//! let config = meta_protocol_proxy::config::Config::load("proxy.yaml".as_ref(), &codecs)?;
//! let proxy = meta_protocol_proxy::Proxy::start(config, codecs).await?;
//! proxy.drain(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod admin;
mod cluster;
pub mod config;
pub mod demo;
mod listener;
pub mod stats;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use meta_protocol_core::CodecRegistry;
use meta_protocol_runtime::ratelimit::LocalRateLimit;
use meta_protocol_runtime::route::{RouteConfig, Router};
use meta_protocol_xds::RdsClient;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::cluster::Cluster;
pub use crate::cluster::{CallError, ClusterStats};
use crate::config::{Config, ListenerConfig, RdsConfig};
pub use crate::listener::ListenerStats;
use crate::listener::{ListenerHandle, ListenerRuntime};
use crate::stats::Counter;
pub use crate::upstream::UpstreamError;

/// Every codec this build knows, by name.
pub fn builtin_codecs() -> CodecRegistry {
    let mut r = CodecRegistry::new();
    // A fresh registry has no names yet, so registration cannot collide.
    let _ = codec_minirpc::register(&mut r);
    let _ = codec_thrift::register(&mut r);
    let _ = codec_brpc::register(&mut r);
    let _ = codec_dubbo::register(&mut r);
    let _ = codec_kafka::register(&mut r);
    let _ = codec_redis::register(&mut r);
    r
}

/// A running proxy.
pub struct Proxy {
    listeners: Vec<(String, SocketAddr, Arc<ListenerHandle>)>,
    admin: Option<SocketAddr>,
    codecs: CodecRegistry,
    config: RwLock<Config>,
    shutdown: watch::Sender<bool>,
    open: Arc<AtomicUsize>,
    closed: Arc<Notify>,
    /// The RDS state of each listener whose routes come from a control plane, by name.
    rds: HashMap<String, RdsState>,
    /// Held while a listener's runtime is rebuilt (reload, RDS update), so that the two never
    /// interleave.
    rebuild: Mutex<()>,
}

/// The routes an RDS listener last accepted, and its counters.
#[derive(Default)]
struct RdsState {
    /// The version and routes in force; none before the first update.
    current: Mutex<Option<(String, RouteConfig)>>,
    stats: RdsStats,
}

/// Counters of one listener's RDS subscription.
#[derive(Debug, Default)]
pub struct RdsStats {
    /// Route configurations applied (and ACKed).
    pub accepted: Counter,
    /// Route configurations refused (and NACKed) because they name a cluster the
    /// configuration does not define. (Configurations that do not convert to meta routes are
    /// NACKed, and logged, before they reach the proxy.)
    pub rejected: Counter,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// An address could not be bound.
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        /// What was being bound.
        what: String,
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Proxy {
    /// Validates `config`, binds every listener (and the admin endpoint), and starts serving.
    ///
    /// # Errors
    /// [`StartError`] for an invalid config or an address that cannot be bound.
    pub async fn start(config: Config, codecs: CodecRegistry) -> Result<Arc<Self>, StartError> {
        config.validate(&codecs)?;
        let (shutdown, _) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Notify::new());
        let mut listeners = Vec::new();
        let mut rds = HashMap::new();
        for l in &config.listeners {
            if l.rds.is_some() {
                rds.insert(l.name.clone(), RdsState::default());
            }
            // An RDS listener starts with no routes: until the first update every request
            // gets the codec's route-not-found reply.
            let rt = build_listener(l, &config, &codecs, None)?;
            let handle = Arc::new(ListenerHandle {
                current: RwLock::new(Arc::new(rt)),
                stats: ListenerStats::default(),
            });
            let tcp = TcpListener::bind(&l.address)
                .await
                .map_err(|source| StartError::Bind {
                    what: format!("listener `{}`", l.name),
                    address: l.address.clone(),
                    source,
                })?;
            let addr = tcp.local_addr().map_err(|source| StartError::Bind {
                what: format!("listener `{}`", l.name),
                address: l.address.clone(),
                source,
            })?;
            tracing::info!(listener = %l.name, %addr, codec = %l.codec.name, "listening");
            tokio::spawn(listener::accept_loop(
                tcp,
                handle.clone(),
                l.max_connections,
                shutdown.subscribe(),
                closed.clone(),
                open.clone(),
            ));
            listeners.push((l.name.clone(), addr, handle));
        }
        let admin_tcp = match &config.admin {
            None => None,
            Some(admin) => Some(TcpListener::bind(&admin.address).await.map_err(|source| {
                StartError::Bind {
                    what: "admin".into(),
                    address: admin.address.clone(),
                    source,
                }
            })?),
        };
        let proxy = Arc::new(Proxy {
            listeners,
            admin: admin_tcp.as_ref().and_then(|t| t.local_addr().ok()),
            codecs,
            config: RwLock::new(config),
            shutdown,
            open,
            closed,
            rds,
            rebuild: Mutex::new(()),
        });
        for l in &proxy.config().listeners {
            if let Some(rds) = &l.rds {
                proxy.subscribe(&l.name, rds);
            }
        }
        if let Some(tcp) = admin_tcp {
            tracing::info!(address = ?proxy.admin, "admin listening");
            tokio::spawn(admin::serve(
                tcp,
                Arc::downgrade(&proxy),
                proxy.shutdown.subscribe(),
            ));
        }
        Ok(proxy)
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, a, _)| *a)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Starts the RDS client of listener `name`; it stops when the proxy drains or is dropped.
    fn subscribe(self: &Arc<Self>, name: &str, rds: &RdsConfig) {
        tracing::info!(
            listener = %name,
            address = %rds.config_source.address,
            route_config_name = %rds.route_config_name,
            "subscribing to routes over RDS"
        );
        let node = meta_protocol_xds::envoy_types::pb::envoy::config::core::v3::Node {
            id: format!("meta-protocol-proxy~{name}"),
            cluster: "meta-protocol-proxy".into(),
            user_agent_name: "meta-protocol-proxy".into(),
            ..Default::default()
        };
        let client = RdsClient::new(&rds.config_source.address, &rds.route_config_name).node(node);
        let proxy = Arc::downgrade(self);
        let listener = name.to_owned();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(client.run(
            move |version, routes| match proxy.upgrade() {
                Some(proxy) => proxy.apply_rds(&listener, version, routes),
                None => Err("the proxy is stopping".into()),
            },
            async move {
                // Done when the proxy drains, or is gone.
                let _ = shutdown.wait_for(|stop| *stop).await;
            },
        ));
    }

    /// Applies routes that came over RDS to listener `name`: checks that every cluster they
    /// name (mirrors included) is defined, then swaps the listener's router, keeping its
    /// clusters and their connections.
    fn apply_rds(&self, name: &str, version: &str, routes: RouteConfig) -> Result<(), String> {
        let (Some(state), Some(handle)) = (self.rds.get(name), self.handle(name)) else {
            return Err(format!("listener `{name}` does not take routes from RDS"));
        };
        let _rebuild = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let rt = match self.rds_runtime(handle, &routes) {
            Ok(rt) => rt,
            Err(e) => {
                state.stats.rejected.inc();
                return Err(e);
            }
        };
        handle.replace(rt);
        state.stats.accepted.inc();
        tracing::info!(
            listener = %name,
            %version,
            routes = routes.routes.len(),
            "routes updated over RDS"
        );
        *state.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version.to_owned(), routes));
        Ok(())
    }

    /// The listener's current runtime with `routes` in place of its router.
    fn rds_runtime(
        &self,
        handle: &ListenerHandle,
        routes: &RouteConfig,
    ) -> Result<ListenerRuntime, String> {
        let current = handle.current();
        check_clusters(routes, |c| current.clusters.contains_key(c))?;
        let router = Router::new(routes).map_err(|e| e.to_string())?;
        Ok(ListenerRuntime {
            codec: current.codec.clone(),
            route_requests: router.routes().iter().map(|_| Default::default()).collect(),
            router,
            clusters: current.clusters.clone(),
            request_timeout: current.request_timeout,
            idle_timeout: current.idle_timeout,
            retry: current.retry.clone(),
            rate_limits: current.rate_limits.clone(),
        })
    }

    /// The RDS version in force on listener `name`: `None` for a listener with inline routes
    /// or before the first update.
    pub fn rds_version(&self, name: &str) -> Option<String> {
        let state = self.rds.get(name)?;
        let current = state.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|(v, _)| v.clone())
    }

    /// The RDS counters of listener `name`; `None` for a listener with inline routes.
    pub fn rds_stats(&self, name: &str) -> Option<&RdsStats> {
        self.rds.get(name).map(|s| &s.stats)
    }

    /// The counters of listener `name`.
    pub fn listener_stats(&self, name: &str) -> Option<&ListenerStats> {
        self.handle(name).map(|h| &h.stats)
    }

    fn handle(&self, name: &str) -> Option<&Arc<ListenerHandle>> {
        self.listeners
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, h)| h)
    }

    /// Requests per route of listener `name`, in route order.
    pub fn route_counts(&self, name: &str) -> Vec<(String, u64)> {
        let Some(h) = self.handle(name) else {
            return Vec::new();
        };
        let rt = h.current();
        rt.router
            .routes()
            .iter()
            .zip(&rt.route_requests)
            .map(|(r, c)| (r.name().to_owned(), c.get()))
            .collect()
    }

    /// Replies per endpoint of `cluster` as seen by listener `listener`.
    pub fn endpoint_replies(&self, listener: &str, cluster: &str) -> Vec<(SocketAddr, u64)> {
        self.handle(listener)
            .and_then(|h| {
                h.current()
                    .clusters
                    .get(cluster)
                    .map(|c| c.endpoint_replies())
            })
            .unwrap_or_default()
    }

    /// Reloads from `config`: routes and clusters of existing listeners are replaced without
    /// closing connections. Listener addresses, codecs and limits need a restart; a change to
    /// them is reported as an error and nothing is applied.
    ///
    /// # Errors
    /// A message naming what is invalid or cannot change without a restart.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        config.validate(&self.codecs).map_err(|e| e.to_string())?;
        let old = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let fixed = |l: &ListenerConfig| {
            (
                l.name.clone(),
                l.address.clone(),
                l.codec.clone(),
                l.max_connections,
                l.rds.clone(),
            )
        };
        let before: Vec<_> = old.listeners.iter().map(fixed).collect();
        let after: Vec<_> = config.listeners.iter().map(fixed).collect();
        if before != after {
            return Err(
                "listener names, addresses, codecs, max_connections or rds changed; \
                        these need a restart (nothing was applied)"
                    .into(),
            );
        }
        let _rebuild = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let mut built = Vec::new();
        for l in &config.listeners {
            // An RDS listener keeps the routes it last accepted, which must still name
            // clusters of the new configuration.
            let rds = self.rds.get(&l.name).and_then(|s| {
                s.current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|(_, routes)| routes.clone())
            });
            if let Some(routes) = &rds {
                check_clusters(routes, |c| config.clusters.iter().any(|k| k.name == c))
                    .map_err(|e| format!("listeners[{}] (routes from RDS): {e}", l.name))?;
            }
            built.push(
                build_listener(l, &config, &self.codecs, rds.as_ref())
                    .map_err(|e| e.to_string())?,
            );
        }
        for (rt, (_, _, handle)) in built.into_iter().zip(&self.listeners) {
            handle.replace(rt);
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Open downstream connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets in-flight requests finish, and returns when every downstream
    /// connection has closed or `deadline` has passed.
    pub async fn drain(&self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        let wait = async {
            while self.open_connections() > 0 {
                let notified = self.closed.notified();
                if self.open_connections() == 0 {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        };
        if tokio::time::timeout(deadline, wait).await.is_err() {
            tracing::warn!(
                open = self.open_connections(),
                "drain deadline passed with connections open"
            );
        }
    }
}

/// Fails, naming the route, when a route or one of its mirrors names a cluster for which
/// `defined` is false.
fn check_clusters(routes: &RouteConfig, defined: impl Fn(&str) -> bool) -> Result<(), String> {
    for r in &routes.routes {
        let action = &r.route;
        let targets = action
            .cluster
            .iter()
            .chain(action.weighted_clusters.iter().map(|w| &w.name))
            .chain(action.request_mirror_policies.iter().map(|m| &m.cluster));
        for cluster in targets {
            if !defined(cluster) {
                return Err(format!(
                    "route `{}` names cluster `{cluster}`, which is not defined in the \
                     proxy's configuration (clusters do not come over xDS)",
                    r.name
                ));
            }
        }
    }
    Ok(())
}

/// Builds a listener's runtime from the configuration; `rds_routes` are the routes an RDS
/// listener last accepted (none: no routes yet).
fn build_listener(
    l: &ListenerConfig,
    config: &Config,
    codecs: &CodecRegistry,
    rds_routes: Option<&RouteConfig>,
) -> Result<ListenerRuntime, config::ConfigError> {
    let at = |k: &str| format!("listeners[{}].{k}", l.name);
    let codec = codecs
        .build(&l.codec.to_codec_config())
        .map_err(|e| config::ConfigError {
            path: at("codec"),
            message: e.to_string(),
        })?;
    let empty;
    let routes = match (&l.route_config, &l.rds, rds_routes) {
        (Some(inline), _, _) => inline,
        (None, _, Some(from_rds)) => from_rds,
        (None, rds, None) => {
            empty = RouteConfig {
                name: rds
                    .as_ref()
                    .map(|r| r.route_config_name.clone())
                    .unwrap_or_default(),
                routes: Vec::new(),
            };
            &empty
        }
    };
    let router = Router::new(routes).map_err(|e| config::ConfigError {
        path: at("route_config"),
        message: e.to_string(),
    })?;
    let mut clusters = HashMap::new();
    for c in &config.clusters {
        clusters.insert(c.name.clone(), Arc::new(Cluster::new(c, codec.clone())));
    }
    let route_requests = router.routes().iter().map(|_| Default::default()).collect();
    let now = std::time::Instant::now();
    let mut rate_limits = Vec::new();
    for (i, f) in l.filters.iter().enumerate() {
        if let Some(spec) = &f.local_ratelimit {
            let limit = LocalRateLimit::new(spec, now).map_err(|e| config::ConfigError {
                path: at(&format!("filters[{i}].local_ratelimit.{}", e.field)),
                message: e.reason,
            })?;
            rate_limits.push(std::sync::Mutex::new(limit));
        }
    }
    Ok(ListenerRuntime {
        codec,
        router,
        clusters,
        request_timeout: l.request_timeout,
        idle_timeout: l.idle_timeout,
        retry: l.retry_policy.clone(),
        route_requests,
        rate_limits: Arc::new(rate_limits),
    })
}
