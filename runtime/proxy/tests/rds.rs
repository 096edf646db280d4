//! Routes from a control plane: a real tonic `RouteDiscoveryService` (the management server
//! side, played by the test) serves Envoy `RouteConfiguration`s to the proxy over a socket, and
//! MiniRPC calls through the proxy follow them.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_action, route_match,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::{
    RouteDiscoveryService, RouteDiscoveryServiceServer,
};
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::v3::Int64Range;
use envoy_types::pb::google::protobuf::Any;
use meta_protocol_core::MessageKind;
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::demo::{Client, UpstreamServer};
use meta_protocol_proxy::{Proxy, builtin_codecs};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const NAME: &str = "minirpc_7000";

// === the management server ===

/// One `StreamRoutes` call as the test sees it: what the proxy sent, and where to push
/// responses. Dropping `responses` ends the stream.
struct XdsStream {
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    responses: mpsc::UnboundedSender<std::result::Result<DiscoveryResponse, Status>>,
}

struct Management {
    streams: mpsc::UnboundedSender<XdsStream>,
}

type ResponseStream<T> = UnboundedReceiverStream<std::result::Result<T, Status>>;

#[tonic::async_trait]
impl RouteDiscoveryService for Management {
    type StreamRoutesStream = ResponseStream<DiscoveryResponse>;

    async fn stream_routes(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> std::result::Result<Response<Self::StreamRoutesStream>, Status> {
        let mut incoming = request.into_inner();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(r)) = incoming.message().await {
                if requests_tx.send(r).is_err() {
                    break;
                }
            }
        });
        let (responses, rx) = mpsc::unbounded_channel();
        self.streams
            .send(XdsStream {
                requests,
                responses,
            })
            .map_err(|_| Status::unavailable("the test is over"))?;
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    type DeltaRoutesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn delta_routes(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> std::result::Result<Response<Self::DeltaRoutesStream>, Status> {
        Err(Status::unimplemented("state of the world only"))
    }

    async fn fetch_routes(
        &self,
        _: Request<DiscoveryRequest>,
    ) -> std::result::Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("streams only"))
    }
}

/// Starts a management server on an ephemeral port; each stream the proxy opens comes out of
/// the returned receiver.
async fn management_server() -> Result<(SocketAddr, mpsc::UnboundedReceiver<XdsStream>)> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let (streams, rx) = mpsc::unbounded_channel();
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        RouteDiscoveryServiceServer::new(Management { streams }),
        TcpListenerStream::new(tcp),
    ));
    Ok((addr, rx))
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = Option<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))?
        .ok_or_else(|| format!("{what}: channel closed").into())
}

impl XdsStream {
    async fn next_request(&mut self) -> Result<DiscoveryRequest> {
        within("a DiscoveryRequest", self.requests.recv()).await
    }

    fn push(&self, version: &str, nonce: &str, rc: &RouteConfiguration) -> Result {
        let response = DiscoveryResponse {
            version_info: version.into(),
            resources: vec![Any {
                type_url: TYPE_URL.into(),
                value: rc.encode_to_vec(),
            }],
            type_url: TYPE_URL.into(),
            nonce: nonce.into(),
            ..Default::default()
        };
        self.responses
            .send(Ok(response))
            .map_err(|_| "the stream is gone")?;
        Ok(())
    }
}

// === Envoy route configurations, as Aeraki builds them ===

fn route_to(name: &str, headers: Vec<HeaderMatcher>, cluster: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            headers,
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn exact(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn dummy(routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "dummy".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

// === the proxy ===

async fn upstream(name: &str) -> Result<UpstreamServer> {
    Ok(UpstreamServer::start("127.0.0.1:0", name).await?)
}

fn config(management: SocketAddr, clusters: &[(&str, &UpstreamServer)]) -> Result<Config> {
    let mut yaml = format!(
        "listeners:\n  - name: in\n    address: 127.0.0.1:0\n    codec: {{ name: minirpc }}\n    rds:\n      config_source: {{ address: \"{management}\" }}\n      route_config_name: {NAME}\nclusters:\n"
    );
    for (name, server) in clusters {
        yaml.push_str(&format!(
            "  - name: {name}\n    endpoints: [{{ address: \"{}\" }}]\n",
            server.addr
        ));
    }
    Ok(Config::parse(&yaml, &builtin_codecs())?)
}

async fn bodies(client: &mut Client, method: u16, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.call(1, method).await?.body);
    }
    out.dedup();
    Ok(out)
}

fn ack_of(request: &DiscoveryRequest) -> (&str, &str, Option<&str>) {
    (
        request.version_info.as_str(),
        request.response_nonce.as_str(),
        request.error_detail.as_ref().map(|s| s.message.as_str()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_control_plane_with_acks_and_nacks() -> Result {
    let a = upstream("a").await?;
    let b = upstream("b").await?;
    let (management, mut streams) = management_server().await?;
    let proxy = Proxy::start(
        config(management, &[("a", &a), ("b", &b)])?,
        builtin_codecs(),
    )
    .await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;

    // Nothing pushed yet: no routes, so the codec's route-not-found reply.
    let mut stream = within("the proxy's RDS stream", streams.recv()).await?;
    let first = stream.next_request().await?;
    assert_eq!(first.resource_names, [NAME]);
    assert_eq!(first.type_url, TYPE_URL);
    assert_eq!(ack_of(&first), ("", "", None));
    assert_eq!(
        first.node.as_ref().map(|n| n.id.as_str()),
        Some("meta-protocol-proxy~in")
    );
    let answer = client.call(1, 1).await?;
    assert_eq!(answer.kind, MessageKind::Error);
    assert_eq!(answer.body, "no route matches the request");
    assert_eq!(proxy.rds_version("in"), None);

    // Version 1: everything to `a`.
    stream.push("1", "n1", &dummy(vec![route_to("all", vec![], "a")]))?;
    let ack = stream.next_request().await?;
    assert_eq!(ack_of(&ack), ("1", "n1", None));
    assert_eq!(ack.resource_names, [NAME]);
    assert_eq!(proxy.rds_version("in").as_deref(), Some("1"));
    assert_eq!(bodies(&mut client, 1, 5).await?, ["a"]);
    assert_eq!(bodies(&mut client, 9, 5).await?, ["a"]);

    // Version 2 on the same stream: method 9 stays on `a`, the rest moves to `b`. The
    // downstream connection opened under version 1 keeps going.
    let v2 = dummy(vec![
        route_to("admin", vec![exact("method", "9")], "a"),
        route_to("rest", vec![], "b"),
    ]);
    stream.push("2", "n2", &v2)?;
    assert_eq!(ack_of(&stream.next_request().await?), ("2", "n2", None));
    assert_eq!(bodies(&mut client, 9, 5).await?, ["a"]);
    assert_eq!(bodies(&mut client, 1, 5).await?, ["b"]);
    assert_eq!(
        proxy.route_counts("in"),
        vec![("admin".to_owned(), 5), ("rest".to_owned(), 5)]
    );

    // Version 3 names a cluster the proxy does not define: NACKed, version 2 stays.
    stream.push("3", "n3", &dummy(vec![route_to("rest", vec![], "nowhere")]))?;
    let nack = stream.next_request().await?;
    let (version, nonce, detail) = ack_of(&nack);
    assert_eq!((version, nonce), ("2", "n3"));
    let detail = detail.ok_or("a NACK carries error_detail")?;
    assert!(
        detail.contains("route `rest` names cluster `nowhere`, which is not defined"),
        "{detail}"
    );
    assert_eq!(bodies(&mut client, 1, 5).await?, ["b"]);
    assert_eq!(bodies(&mut client, 9, 3).await?, ["a"]);

    // Version 4 does not convert (a range matcher): NACKed naming the route and field.
    let mut ranged = route_to("ranged", vec![], "a");
    if let Some(m) = ranged.r#match.as_mut() {
        m.headers.push(HeaderMatcher {
            name: "method".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::RangeMatch(Int64Range {
                start: 1,
                end: 5,
            })),
            ..Default::default()
        });
    }
    stream.push("4", "n4", &dummy(vec![ranged]))?;
    let nack = stream.next_request().await?;
    let (version, nonce, detail) = ack_of(&nack);
    assert_eq!((version, nonce), ("2", "n4"));
    let detail = detail.ok_or("a NACK carries error_detail")?;
    assert!(
        detail.contains("routes[ranged].match.headers[0].range_match"),
        "{detail}"
    );
    assert_eq!(bodies(&mut client, 1, 5).await?, ["b"]);
    assert_eq!(proxy.rds_version("in").as_deref(), Some("2"));
    let stats = proxy.rds_stats("in").ok_or("rds stats")?;
    assert_eq!((stats.accepted.get(), stats.rejected.get()), (2, 1));
    let admin = meta_protocol_proxy::admin::stats(&proxy);
    for line in [
        "listener.in.rds.version: 2",
        "listener.in.rds.accepted: 2",
        "listener.in.rds.rejected: 1",
    ] {
        assert!(admin.lines().any(|l| l == line), "{line} in\n{admin}");
    }

    // A reload (SIGHUP) keeps the routes from RDS; one that drops a cluster they use is
    // refused.
    proxy.reload(proxy.config())?;
    assert_eq!(bodies(&mut client, 1, 3).await?, ["b"]);
    let without_b = config(management, &[("a", &a)])?;
    let e = proxy.reload(without_b).expect_err("b is in use");
    assert!(e.contains("names cluster `b`"), "{e}");
    assert_eq!(bodies(&mut client, 1, 3).await?, ["b"]);

    // The management server ends the stream: the proxy reconnects, naming the version in
    // force, and keeps routing by it meanwhile.
    drop(stream);
    let mut stream = within("the reconnected stream", streams.recv()).await?;
    let again = stream.next_request().await?;
    assert_eq!(ack_of(&again), ("2", "", None));
    assert_eq!(again.resource_names, [NAME]);
    assert_eq!(bodies(&mut client, 1, 3).await?, ["b"]);
    stream.push("5", "n5", &dummy(vec![route_to("all", vec![], "a")]))?;
    assert_eq!(ack_of(&stream.next_request().await?), ("5", "n5", None));
    assert_eq!(bodies(&mut client, 1, 3).await?, ["a"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_leaves_the_listener_without_routes() -> Result {
    let a = upstream("a").await?;
    // A port with nobody listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let proxy = Proxy::start(config(closed, &[("a", &a)])?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    for _ in 0..3 {
        let answer = client.call(1, 1).await?;
        assert_eq!(answer.kind, MessageKind::Error);
        assert_eq!(answer.body, "no route matches the request");
    }
    assert_eq!(proxy.rds_version("in"), None);
    proxy.drain(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_and_mirrors_from_rds_take_effect() -> Result {
    use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
    use envoy_types::pb::envoy::config::route::v3::WeightedCluster;
    use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
    use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
    use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
    use envoy_types::pb::google::protobuf::UInt32Value;
    use std::sync::atomic::Ordering;

    let v1 = upstream("v1").await?;
    let v2 = upstream("v2").await?;
    let shadow = upstream("shadow").await?;
    let (management, mut streams) = management_server().await?;
    let proxy = Proxy::start(
        config(management, &[("v1", &v1), ("v2", &v2), ("shadow", &shadow)])?,
        builtin_codecs(),
    )
    .await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    let mut stream = within("the proxy's RDS stream", streams.recv()).await?;
    stream.next_request().await?;

    let weight = |name: &str, value: u32| ClusterWeight {
        name: name.into(),
        weight: Some(UInt32Value { value }),
        ..Default::default()
    };
    let mut split = route_to("split", vec![], "unused");
    if let Some(route::Action::Route(action)) = split.action.as_mut() {
        action.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters: vec![weight("v1", 0), weight("v2", 1)],
                ..Default::default()
            },
        ));
        action.request_mirror_policies = vec![RequestMirrorPolicy {
            cluster: "shadow".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: 100,
                    denominator: 0, // HUNDRED
                }),
                runtime_key: String::new(),
            }),
            ..Default::default()
        }];
    }
    stream.push("1", "n1", &dummy(vec![split]))?;
    assert_eq!(ack_of(&stream.next_request().await?), ("1", "n1", None));

    assert_eq!(bodies(&mut client, 1, 10).await?, ["v2"], "v1 has weight 0");
    assert_eq!(v1.requests.load(Ordering::Relaxed), 0);
    // Every request is mirrored, fire-and-forget.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while shadow.requests.load(Ordering::Relaxed) < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mirrored {} of 10",
            shadow.requests.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
