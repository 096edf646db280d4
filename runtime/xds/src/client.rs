//! The RDS client: drives a [`Subscription`] over
//! `envoy.service.route.v3.RouteDiscoveryService/StreamRoutes` with tonic.
//!
//! ```no_run
//! # async fn run() {
//! use meta_protocol_xds::RdsClient;
//!
//! let client = RdsClient::new("istiod.istio-system:15010", "minirpc_7000");
//! client
//!     .run(
//!         |version, routes| {
//!             println!("version {version}: {} routes", routes.routes.len());
//!             Ok(()) // Err(reason) NACKs the update
//!         },
//!         std::future::pending(),
//!     )
//!     .await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
use meta_protocol_runtime::route::RouteConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::subscription::Subscription;

/// A subscription to one route configuration on one management server.
#[derive(Debug, Clone)]
pub struct RdsClient {
    address: String,
    subscription: Subscription,
    backoff_base: Duration,
    backoff_max: Duration,
    connect_timeout: Duration,
}

/// Why one stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("the management server closed the stream")]
    Closed,
    #[error("the request stream is gone")]
    RequestsGone,
}

impl RdsClient {
    /// Subscribes to `route_config_name` on the management server at `address` (`host:port`,
    /// plaintext gRPC), as node `meta-protocol-proxy`.
    pub fn new(address: impl Into<String>, route_config_name: impl Into<String>) -> Self {
        let node = Node {
            id: "meta-protocol-proxy".into(),
            cluster: "meta-protocol-proxy".into(),
            user_agent_name: "meta-protocol-proxy".into(),
            ..Default::default()
        };
        RdsClient {
            address: address.into(),
            subscription: Subscription::new(route_config_name, node),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Identifies the client as `node` to the management server.
    #[must_use]
    pub fn node(mut self, node: Node) -> Self {
        let name = self.subscription.name().to_owned();
        self.subscription = Subscription::new(name, node);
        self
    }

    /// After a failed stream, waits `base` (doubled after every further failure up to `max`,
    /// with up to 50% random jitter) before connecting again. Defaults: 250ms, 30s.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// Subscribes until `shutdown` completes. Every route configuration the server sends for
    /// the subscription is converted and handed to `on_update` with its version: `Ok` ACKs it,
    /// `Err(reason)` NACKs it with that reason (as does a configuration that does not
    /// convert), and the server is expected to keep the previous version in force. A failed
    /// stream is retried with backoff; the new stream names the version last accepted.
    pub async fn run<F, S>(mut self, mut on_update: F, shutdown: S)
    where
        F: FnMut(&str, RouteConfig) -> Result<(), String> + Send,
        S: Future<Output = ()>,
    {
        let work = async {
            let mut delay = self.backoff_base;
            loop {
                let e = self.stream_once(&mut on_update, &mut delay).await;
                let wait = delay.mul_f64(1.0 + fastrand::f64() * 0.5);
                tracing::warn!(
                    address = %self.address,
                    route_config_name = %self.subscription.name(),
                    error = %e,
                    retry_in = ?wait,
                    "RDS stream ended"
                );
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(self.backoff_max);
            }
        };
        tokio::select! {
            () = work => {}
            () = shutdown => {}
        }
    }

    /// One stream, from connecting until it fails. Resets `delay` once the server answers.
    async fn stream_once<F>(&mut self, on_update: &mut F, delay: &mut Duration) -> StreamError
    where
        F: FnMut(&str, RouteConfig) -> Result<(), String>,
    {
        match self.try_stream(on_update, delay).await {
            Ok(()) => StreamError::Closed,
            Err(e) => e,
        }
    }

    async fn try_stream<F>(
        &mut self,
        on_update: &mut F,
        delay: &mut Duration,
    ) -> Result<(), StreamError>
    where
        F: FnMut(&str, RouteConfig) -> Result<(), String>,
    {
        let channel = Endpoint::from_shared(format!("http://{}", self.address))?
            .connect_timeout(self.connect_timeout)
            .connect()
            .await?;
        let mut grpc = RouteDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(4);
        tx.send(self.subscription.initial_request())
            .await
            .map_err(|_| StreamError::RequestsGone)?;
        let mut responses = grpc
            .stream_routes(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(
            address = %self.address,
            route_config_name = %self.subscription.name(),
            "RDS stream open"
        );
        while let Some(response) = responses.message().await? {
            *delay = self.backoff_base;
            let reply = self.answer(&response, on_update);
            tx.send(reply)
                .await
                .map_err(|_| StreamError::RequestsGone)?;
        }
        Ok(())
    }

    /// Applies `response` and returns its ACK or NACK.
    fn answer<F>(&mut self, response: &DiscoveryResponse, on_update: &mut F) -> DiscoveryRequest
    where
        F: FnMut(&str, RouteConfig) -> Result<(), String>,
    {
        let sub = &mut self.subscription;
        let outcome = match sub.read(response) {
            Ok(None) => Ok(()),
            Ok(Some(routes)) => on_update(&response.version_info, routes),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                tracing::debug!(version = %response.version_info, nonce = %response.nonce, "RDS ACK");
                sub.ack(response)
            }
            Err(reason) => {
                tracing::warn!(
                    route_config_name = %sub.name(),
                    version = %response.version_info,
                    kept = %sub.accepted_version(),
                    %reason,
                    "RDS update rejected (NACK)"
                );
                sub.nack(response, &reason)
            }
        }
    }
}
