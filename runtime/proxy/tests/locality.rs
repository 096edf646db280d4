//! Locality-weighted load balancing end to end: MiniRPC upstream servers in two zones with
//! different numbers of endpoints, the proxy in front, and a client counting which upstream
//! answered.

use std::collections::BTreeMap;
use std::time::Duration;

use meta_protocol_core::MessageKind;
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::demo::{Client, UpstreamServer};
use meta_protocol_proxy::{Proxy, builtin_codecs};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One listener routing everything to cluster `zoned`: `a` in zone-a (weight 80) and `b1`,
/// `b2`, `b3` in zone-b (weight 20).
fn config(zone_a: &UpstreamServer, zone_b: &[UpstreamServer], extra: &str) -> Result<Config> {
    let mut endpoints = format!(
        "      - {{ address: \"{}\", locality: zone-a }}\n",
        zone_a.addr
    );
    for s in zone_b {
        endpoints.push_str(&format!(
            "      - {{ address: \"{}\", locality: zone-b }}\n",
            s.addr
        ));
    }
    let yaml = format!(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:0
    codec: {{ name: minirpc }}
    request_timeout: 2s
    retry_policy: {{ on_connect_failure: true, max_retries: 2 }}
    route_config:
      name: r
      routes:
        - name: all
          route: {{ cluster: zoned }}
clusters:
  - name: zoned
    locality_weights: {{ zone-a: 80, zone-b: 20 }}
    connect_timeout: 200ms
{extra}    endpoints:
{endpoints}"#
    );
    Ok(Config::parse(&yaml, &builtin_codecs())?)
}

async fn servers() -> Result<(UpstreamServer, Vec<UpstreamServer>)> {
    let a = UpstreamServer::start("127.0.0.1:0", "a").await?;
    let mut b = Vec::new();
    for name in ["b1", "b2", "b3"] {
        b.push(UpstreamServer::start("127.0.0.1:0", name).await?);
    }
    Ok((a, b))
}

/// Answers per upstream name over `n` calls.
async fn answers(client: &mut Client, n: usize) -> Result<BTreeMap<String, u32>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let answer = client.call(1, 1).await?;
        if answer.kind != MessageKind::Response {
            return Err(format!("an error reply: {answer:?}").into());
        }
        *counts.entry(answer.body).or_insert(0u32) += 1;
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_80_20_by_locality_whatever_the_endpoint_counts() -> Result {
    let (a, b) = servers().await?;
    for policy in ["round_robin", "random", "least_request"] {
        let extra = format!("    lb_policy: {policy}\n");
        let proxy = Proxy::start(config(&a, &b, &extra)?, builtin_codecs()).await?;
        let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
        let counts = answers(&mut client, 1000).await?;
        // By endpoint count zone-b would get 3/4 of the calls; by locality weight it gets 1/5.
        let to_a = counts.get("a").copied().unwrap_or(0);
        assert!(
            (750..=850).contains(&to_a),
            "{policy}: zone-a's share is 80% within 5%: {counts:?}"
        );
        let to_b: Vec<u32> = ["b1", "b2", "b3"]
            .iter()
            .map(|n| counts.get(*n).copied().unwrap_or(0))
            .collect();
        assert_eq!(
            to_a + to_b.iter().sum::<u32>(),
            1000,
            "{policy}: {counts:?}"
        );
        assert!(
            to_b.iter().all(|n| *n > 25),
            "{policy}: zone-b's share is spread over its endpoints: {counts:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_locality_gives_its_share_to_the_other() -> Result {
    let (a, b) = servers().await?;
    let outlier = "    outlier_detection: { consecutive_errors: 1, base_ejection_time: 30s, max_ejection_time: 60s, max_ejection_percent: 50 }\n";
    let proxy = Proxy::start(config(&a, &b, outlier)?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    let before = answers(&mut client, 100).await?;
    assert_eq!(before.get("a"), Some(&80), "{before:?}");

    // zone-a's only endpoint dies: the connection failures eject it (the retries land in
    // zone-b), and zone-b takes every call.
    a.stop();
    let mut counts = BTreeMap::new();
    for _ in 0..200 {
        let answer = tokio::time::timeout(Duration::from_secs(5), client.call(1, 1)).await??;
        *counts
            .entry(if answer.kind == MessageKind::Response {
                answer.body
            } else {
                "error".to_owned()
            })
            .or_insert(0u32) += 1;
    }
    assert!(
        counts.get("error").copied().unwrap_or(0) <= 2,
        "the dead locality costs at most a couple of calls: {counts:?}"
    );
    assert!(!counts.contains_key("a"), "{counts:?}");
    let to_b: u32 = ["b1", "b2", "b3"]
        .iter()
        .map(|n| counts.get(*n).copied().unwrap_or(0))
        .sum();
    assert!(to_b >= 198, "{counts:?}");
    Ok(())
}
