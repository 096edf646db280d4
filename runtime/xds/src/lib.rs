//! # meta-protocol-xds
//!
//! MetaRDS: meta routes from an xDS control plane, as Aeraki and Istio serve them.
//!
//! Aeraki does not put meta routes on the wire in a private resource type: it serves Envoy's own
//! RDS resource, `type.googleapis.com/envoy.config.route.v3.RouteConfiguration`, with the meta
//! routes wrapped in one virtual host named `dummy`. This crate turns such a resource back into
//! the meta route model ([`RouteConfig`](meta_protocol_runtime::route::RouteConfig)) and keeps a
//! subscription to it.
//!
//! Three layers, the first two sans-IO:
//!
//! - [`convert`]: pure functions from an Envoy `RouteConfiguration` to a meta `RouteConfig`;
//!   anything the meta model cannot express is an error naming the route and the field.
//! - [`subscription`]: the state-of-the-world protocol state of one RDS subscription: the
//!   first request, reading a response, the ACK or NACK to send back.
//! - [`client`]: a tonic client that drives a subscription over
//!   `envoy.service.route.v3.RouteDiscoveryService/StreamRoutes`, reconnecting with backoff,
//!   and hands every accepted `RouteConfig` to a callback.
//!
//! ```
//! use envoy_types::pb::envoy::config::route::v3::{
//!     route, route_action, HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch,
//!     VirtualHost,
//! };
//! use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
//! use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
//!
//! let envoy = RouteConfiguration {
//!     name: "minirpc_7000".into(),
//!     virtual_hosts: vec![VirtualHost {
//!         name: "dummy".into(),
//!         domains: vec!["*".into()],
//!         routes: vec![Route {
//!             name: "writes".into(),
//!             r#match: Some(RouteMatch {
//!                 headers: vec![HeaderMatcher {
//!                     name: "method".into(),
//!                     header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
//!                         match_pattern: Some(MatchPattern::Prefix("set".into())),
//!                         ..Default::default()
//!                     })),
//!                     ..Default::default()
//!                 }],
//!                 ..Default::default()
//!             }),
//!             action: Some(route::Action::Route(RouteAction {
//!                 cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("primary".into())),
//!                 ..Default::default()
//!             })),
//!             ..Default::default()
//!         }],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let meta = meta_protocol_xds::convert::route_config(&envoy).unwrap();
//! assert_eq!(meta.name, "minirpc_7000");
//! assert_eq!(meta.routes[0].matcher.metadata[0].prefix.as_deref(), Some("set"));
//! assert_eq!(meta.routes[0].route.cluster.as_deref(), Some("primary"));
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod convert;
pub mod subscription;

pub use client::RdsClient;
pub use convert::{ConvertError, ROUTE_CONFIGURATION_TYPE_URL};
pub use subscription::{Subscription, UpdateError};

/// The Envoy protos this crate speaks, re-exported so that users (and tests playing the
/// management server) use the same versions.
pub use envoy_types;
