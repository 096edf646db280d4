//! # meta-protocol-proxy
//!
//! The native tokio host of the MetaProtocol data plane: listeners decode requests with a
//! codec, the shared sans-IO core (`meta-protocol-runtime`) routes and balances them, and
//! upstream pools carry them to clusters, many downstream connections sharing a few upstream
//! connections. Configuration: `docs/configuration.md`.
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
use std::sync::{Arc, RwLock};
use std::time::Duration;

use meta_protocol_core::CodecRegistry;
use meta_protocol_runtime::route::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::cluster::Cluster;
pub use crate::cluster::{CallError, ClusterStats};
use crate::config::{Config, ListenerConfig};
pub use crate::listener::ListenerStats;
use crate::listener::{ListenerHandle, ListenerRuntime};
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
        for l in &config.listeners {
            let rt = build_listener(l, &config, &codecs)?;
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
        });
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
            )
        };
        let before: Vec<_> = old.listeners.iter().map(fixed).collect();
        let after: Vec<_> = config.listeners.iter().map(fixed).collect();
        if before != after {
            return Err(
                "listener names, addresses, codecs or max_connections changed; \
                        these need a restart (nothing was applied)"
                    .into(),
            );
        }
        let mut built = Vec::new();
        for l in &config.listeners {
            built.push(build_listener(l, &config, &self.codecs).map_err(|e| e.to_string())?);
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

fn build_listener(
    l: &ListenerConfig,
    config: &Config,
    codecs: &CodecRegistry,
) -> Result<ListenerRuntime, config::ConfigError> {
    let at = |k: &str| format!("listeners[{}].{k}", l.name);
    let codec = codecs
        .build(&l.codec.to_codec_config())
        .map_err(|e| config::ConfigError {
            path: at("codec"),
            message: e.to_string(),
        })?;
    let router = Router::new(&l.route_config).map_err(|e| config::ConfigError {
        path: at("route_config"),
        message: e.to_string(),
    })?;
    let mut clusters = HashMap::new();
    for c in &config.clusters {
        clusters.insert(c.name.clone(), Arc::new(Cluster::new(c, codec.clone())));
    }
    let route_requests = router.routes().iter().map(|_| Default::default()).collect();
    Ok(ListenerRuntime {
        codec,
        router,
        clusters,
        request_timeout: l.request_timeout,
        idle_timeout: l.idle_timeout,
        retry: l.retry_policy.clone(),
        route_requests,
    })
}
