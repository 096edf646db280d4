//! The protocol state of one state-of-the-world RDS subscription, without I/O.
//!
//! A stream starts with [`Subscription::initial_request`] (the resource name, the node, and
//! the version last accepted, so a reconnect does not re-apply what is in force). Every
//! response is [read](Subscription::read); the host applies what it carries and answers with
//! [`Subscription::ack`] (the response's `version_info` and `nonce`) or
//! [`Subscription::nack`] (the previous version, the response's nonce and an `error_detail`).
//!
//! ```
//! use envoy_types::pb::envoy::config::core::v3::Node;
//! use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
//! use meta_protocol_xds::{Subscription, ROUTE_CONFIGURATION_TYPE_URL};
//!
//! let mut sub = Subscription::new("minirpc_7000", Node::default());
//! let first = sub.initial_request();
//! assert_eq!(first.resource_names, ["minirpc_7000"]);
//!
//! // A response that carries none of our resources is acknowledged and changes nothing.
//! let response = DiscoveryResponse {
//!     version_info: "1".into(),
//!     nonce: "a".into(),
//!     type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
//!     ..Default::default()
//! };
//! assert_eq!(sub.read(&response), Ok(None));
//! let ack = sub.ack(&response);
//! assert_eq!((ack.version_info.as_str(), ack.response_nonce.as_str()), ("1", "a"));
//! ```

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status;
use meta_protocol_runtime::route::RouteConfig;
use prost::Message as _;

use crate::convert::{self, ConvertError, ROUTE_CONFIGURATION_TYPE_URL};

/// gRPC's `INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// One route configuration subscribed to by name.
#[derive(Debug, Clone)]
pub struct Subscription {
    name: String,
    node: Node,
    accepted: String,
}

/// A response that cannot be applied; its text becomes the NACK's `error_detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The response is for another resource type.
    #[error("type_url `{0}` is not {ROUTE_CONFIGURATION_TYPE_URL}")]
    TypeUrl(String),
    /// A resource is not a `RouteConfiguration`.
    #[error("resources[{index}]: type_url `{type_url}` is not {ROUTE_CONFIGURATION_TYPE_URL}")]
    ResourceType {
        /// The resource's position.
        index: usize,
        /// Its type URL.
        type_url: String,
    },
    /// A resource does not decode.
    #[error("resources[{index}]: cannot decode a RouteConfiguration: {reason}")]
    Decode {
        /// The resource's position.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// The subscribed configuration comes twice in one response.
    #[error("route configuration `{0}` appears twice in the response")]
    Duplicate(String),
    /// The configuration cannot become meta routes.
    #[error("route configuration `{name}`: {source}")]
    Convert {
        /// The configuration's name.
        name: String,
        /// Why.
        source: ConvertError,
    },
}

impl Subscription {
    /// A subscription to the route configuration `name`, identifying itself as `node`.
    pub fn new(name: impl Into<String>, node: Node) -> Self {
        Subscription {
            name: name.into(),
            node,
            accepted: String::new(),
        }
    }

    /// The subscribed route configuration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version last acknowledged; empty before the first.
    pub fn accepted_version(&self) -> &str {
        &self.accepted
    }

    /// The first request on a new stream: the node, the resource name, and the version last
    /// accepted (empty at first).
    pub fn initial_request(&self) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.accepted.clone(),
            node: Some(self.node.clone()),
            resource_names: vec![self.name.clone()],
            type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
            ..Default::default()
        }
    }

    /// The routes a response carries for this subscription, converted; `None` when it carries
    /// none of them (state-of-the-world RDS does not remove a route configuration by leaving
    /// it out, so nothing changes).
    ///
    /// # Errors
    /// [`UpdateError`] when the response or the configuration cannot be used: answer it with
    /// [`Subscription::nack`].
    pub fn read(&self, response: &DiscoveryResponse) -> Result<Option<RouteConfig>, UpdateError> {
        if response.type_url != ROUTE_CONFIGURATION_TYPE_URL {
            return Err(UpdateError::TypeUrl(response.type_url.clone()));
        }
        let mut found = None;
        for (index, any) in response.resources.iter().enumerate() {
            if any.type_url != ROUTE_CONFIGURATION_TYPE_URL {
                return Err(UpdateError::ResourceType {
                    index,
                    type_url: any.type_url.clone(),
                });
            }
            let rc = RouteConfiguration::decode(any.value.as_slice()).map_err(|e| {
                UpdateError::Decode {
                    index,
                    reason: e.to_string(),
                }
            })?;
            if rc.name != self.name {
                continue;
            }
            if found.is_some() {
                return Err(UpdateError::Duplicate(rc.name));
            }
            found = Some(rc);
        }
        let Some(rc) = found else {
            return Ok(None);
        };
        convert::route_config(&rc)
            .map(Some)
            .map_err(|source| UpdateError::Convert {
                name: rc.name.clone(),
                source,
            })
    }

    /// The ACK of `response`, which was applied: its version becomes the accepted one.
    pub fn ack(&mut self, response: &DiscoveryResponse) -> DiscoveryRequest {
        self.accepted = response.version_info.clone();
        DiscoveryRequest {
            version_info: self.accepted.clone(),
            resource_names: vec![self.name.clone()],
            type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        }
    }

    /// The NACK of `response`, which was not applied: the accepted version stays, the nonce is
    /// the response's, and `error_detail` says why.
    pub fn nack(&self, response: &DiscoveryResponse, detail: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.accepted.clone(),
            resource_names: vec![self.name.clone()],
            type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(Status {
                code: INVALID_ARGUMENT,
                message: detail.to_owned(),
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::route::v3::{
        Route, RouteAction, VirtualHost, route, route_action,
    };
    use envoy_types::pb::google::protobuf::Any;

    use super::*;

    fn routes(name: &str, cluster: &str) -> RouteConfiguration {
        RouteConfiguration {
            name: name.into(),
            virtual_hosts: vec![VirtualHost {
                name: "dummy".into(),
                routes: vec![Route {
                    name: "all".into(),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                            cluster.into(),
                        )),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn response(version: &str, nonce: &str, resources: &[RouteConfiguration]) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            nonce: nonce.into(),
            type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
            resources: resources
                .iter()
                .map(|rc| Any {
                    type_url: ROUTE_CONFIGURATION_TYPE_URL.into(),
                    value: rc.encode_to_vec(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn acks_carry_the_version_and_nonce_and_nacks_keep_the_accepted_version() {
        let node = Node {
            id: "proxy-1".into(),
            ..Default::default()
        };
        let mut sub = Subscription::new("r_7000", node);
        let first = sub.initial_request();
        assert_eq!(first.resource_names, ["r_7000"]);
        assert_eq!(first.type_url, ROUTE_CONFIGURATION_TYPE_URL);
        assert_eq!(first.node.as_ref().map(|n| n.id.as_str()), Some("proxy-1"));
        assert_eq!(
            (first.version_info.as_str(), first.response_nonce.as_str()),
            ("", "")
        );

        // Other configurations in the same response are skipped.
        let good = response("v1", "n1", &[routes("other", "x"), routes("r_7000", "a")]);
        let rc = sub.read(&good).expect("valid").expect("ours");
        assert_eq!(rc.routes[0].route.cluster.as_deref(), Some("a"));
        let ack = sub.ack(&good);
        assert_eq!(
            (ack.version_info.as_str(), ack.response_nonce.as_str()),
            ("v1", "n1")
        );
        assert!(ack.error_detail.is_none());
        assert!(
            ack.node.is_none(),
            "the node goes in the first request only"
        );
        assert_eq!(sub.accepted_version(), "v1");

        let mut bad_rc = routes("r_7000", "a");
        bad_rc.virtual_hosts.clear();
        let bad = response("v2", "n2", &[bad_rc]);
        let e = sub.read(&bad).expect_err("no virtual host");
        assert!(
            e.to_string()
                .starts_with("route configuration `r_7000`: virtual_hosts:"),
            "{e}"
        );
        let nack = sub.nack(&bad, &e.to_string());
        assert_eq!(
            (nack.version_info.as_str(), nack.response_nonce.as_str()),
            ("v1", "n2")
        );
        let detail = nack.error_detail.expect("error_detail");
        assert_eq!(detail.code, INVALID_ARGUMENT);
        assert_eq!(detail.message, e.to_string());
        assert_eq!(sub.accepted_version(), "v1");

        // A reconnect names the version in force.
        let again = sub.initial_request();
        assert_eq!(
            (again.version_info.as_str(), again.response_nonce.as_str()),
            ("v1", "")
        );
        assert!(again.node.is_some());
    }

    #[test]
    fn malformed_responses_are_errors() {
        let sub = Subscription::new("r", Node::default());
        let mut wrong_type = response("1", "a", &[]);
        wrong_type.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        assert!(matches!(
            sub.read(&wrong_type),
            Err(UpdateError::TypeUrl(_))
        ));

        let mut wrong_resource = response("1", "a", &[routes("r", "a")]);
        wrong_resource.resources[0].type_url = "type.googleapis.com/x".into();
        assert!(matches!(
            sub.read(&wrong_resource),
            Err(UpdateError::ResourceType { index: 0, .. })
        ));

        let mut garbage = response("1", "a", &[routes("r", "a")]);
        garbage.resources[0].value = vec![0x0a, 0xff];
        assert!(matches!(
            sub.read(&garbage),
            Err(UpdateError::Decode { index: 0, .. })
        ));

        let twice = response("1", "a", &[routes("r", "a"), routes("r", "b")]);
        assert_eq!(sub.read(&twice), Err(UpdateError::Duplicate("r".into())));

        let elsewhere = response("1", "a", &[routes("not-ours", "a")]);
        assert_eq!(sub.read(&elsewhere), Ok(None));
    }
}
