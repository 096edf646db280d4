//! The native proxy end to end, with MiniRPC upstream servers and clients over real sockets.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meta_protocol_core::MessageKind;
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::demo::{Client, UpstreamServer};
use meta_protocol_proxy::{Proxy, builtin_codecs};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A config with one listener on an ephemeral port and the given routes and clusters.
fn config(routes: &str, clusters: &str, extra_listener: &str) -> Result<Config> {
    let yaml = format!(
        "listeners:\n  - name: in\n    address: 127.0.0.1:0\n    codec: {{ name: minirpc }}\n{extra_listener}    route_config:\n      name: r\n      routes:\n{routes}\nclusters:\n{clusters}"
    );
    Ok(Config::parse(&yaml, &builtin_codecs())?)
}

fn cluster(name: &str, servers: &[&UpstreamServer], extra: &str) -> String {
    let eps: Vec<String> = servers
        .iter()
        .map(|s| format!("{{ address: \"{}\" }}", s.addr))
        .collect();
    format!(
        "  - name: {name}\n    endpoints: [{}]\n{extra}",
        eps.join(", ")
    )
}

async fn upstream(name: &str) -> Result<UpstreamServer> {
    Ok(UpstreamServer::start("127.0.0.1:0", name).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_method_and_splits_80_20() -> Result {
    let a = upstream("a").await?;
    let v1 = upstream("v1").await?;
    let v2 = upstream("v2").await?;
    let routes = "        - name: admin\n          match: { metadata: [ { name: method, exact: \"9\" } ] }\n          route: { cluster: admin }\n        - name: split\n          route: { weighted_clusters: [ { name: v1, weight: 80 }, { name: v2, weight: 20 } ] }\n";
    let clusters = [
        cluster("admin", &[&a], ""),
        cluster("v1", &[&v1], ""),
        cluster("v2", &[&v2], ""),
    ]
    .concat();
    let proxy = Proxy::start(config(routes, &clusters, "")?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;

    for _ in 0..10 {
        assert_eq!(client.call(1, 9).await?.body, "a");
    }
    let mut counts = BTreeMap::new();
    for _ in 0..1000 {
        let answer = client.call(1, 1).await?;
        *counts.entry(answer.body).or_insert(0u32) += 1;
    }
    let v1n = counts.get("v1").copied().unwrap_or(0);
    let v2n = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(v1n + v2n, 1000, "{counts:?}");
    assert!((750..=850).contains(&v1n), "80/20 within 5%: {counts:?}");
    assert_eq!(
        proxy.route_counts("in"),
        vec![("admin".to_owned(), 10), ("split".to_owned(), 1000)]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_the_protocols_error_reply_and_heartbeats_are_local() -> Result {
    let a = upstream("a").await?;
    let routes = "        - name: only-9\n          match: { metadata: [ { name: method, exact: \"9\" } ] }\n          route: { cluster: a }\n";
    let proxy = Proxy::start(
        config(routes, &cluster("a", &[&a], ""), "")?,
        builtin_codecs(),
    )
    .await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;

    let answer = client.call(1, 1).await?;
    assert_eq!(answer.kind, MessageKind::Error);
    assert_eq!(
        answer.request_id, 1,
        "the error reply carries the request's id"
    );
    assert_eq!(answer.body, "no route matches the request");

    let pong = client.ping().await?;
    assert_eq!(pong.kind, MessageKind::Heartbeat);
    assert_eq!(
        a.connections.load(Ordering::Relaxed),
        0,
        "nothing reached the upstream"
    );
    // The connection is still usable.
    assert_eq!(client.call(1, 9).await?.body, "a");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_a_few_upstream_connections_with_ids_restored() -> Result {
    let a = upstream("a").await?;
    let routes = "        - name: all\n          route: { cluster: a }\n";
    let clusters = cluster(
        "a",
        &[&a],
        "    pool: { mode: multiplexed, connections_per_endpoint: 2 }\n",
    );
    let proxy = Proxy::start(config(routes, &clusters, "")?, builtin_codecs()).await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;

    let mut tasks = Vec::new();
    for _ in 0..40 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await?;
            for i in 1..=25u32 {
                let answer = client.call(3, 3).await?;
                // Each client numbers its calls 1, 2, 3...: the proxy rewrote them upstream
                // and must restore them.
                if answer.request_id != i || answer.body != "a" {
                    return Err(format!("call {i} got {answer:?}").into());
                }
            }
            Result::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(a.requests.load(Ordering::Relaxed), 1000);
    let conns = a.connections.load(Ordering::Relaxed);
    assert!(
        conns <= 2,
        "40 downstream connections used {conns} upstream connections"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() -> Result {
    let a = upstream("a").await?;
    let routes = "        - name: all\n          route: { cluster: a }\n";
    let proxy = Proxy::start(
        config(routes, &cluster("a", &[&a], ""), "")?,
        builtin_codecs(),
    )
    .await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;
    let mut good = Client::connect(addr).await?;
    let mut bad = Client::connect(addr).await?;
    assert_eq!(good.call(1, 1).await?.body, "a");

    bad.send_raw(b"GET / HTTP/1.1\r\n\r\n").await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_answer()).await?;
    assert!(closed.is_err(), "the bad connection is closed: {closed:?}");
    assert_eq!(
        good.call(1, 1).await?.body,
        "a",
        "the other connection is unaffected"
    );
    assert_eq!(
        proxy
            .listener_stats("in")
            .ok_or("stats")?
            .framing_errors
            .get(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_ejected_and_every_call_is_answered() -> Result {
    let a = upstream("a").await?;
    let b = upstream("b").await?;
    let routes = "        - name: all\n          route: { cluster: ab }\n";
    let clusters = cluster(
        "ab",
        &[&a, &b],
        "    connect_timeout: 200ms\n    outlier_detection: { consecutive_errors: 2, base_ejection_time: 30s, max_ejection_time: 60s, max_ejection_percent: 50 }\n",
    );
    let listener =
        "    request_timeout: 1s\n    retry_policy: { on_connect_failure: true, max_retries: 2 }\n";
    let proxy = Proxy::start(config(routes, &clusters, listener)?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    for _ in 0..10 {
        client.call(1, 1).await?;
    }
    a.stop();
    let start = Instant::now();
    let mut errors = 0;
    for _ in 0..100 {
        let answer = tokio::time::timeout(Duration::from_secs(3), client.call(1, 1)).await??;
        match answer.kind {
            MessageKind::Response => assert_eq!(answer.body, "b"),
            _ => errors += 1,
        }
    }
    assert!(errors <= 4, "{errors} error replies after the kill");
    // After ejection every call goes to b without delay.
    for _ in 0..20 {
        assert_eq!(client.call(1, 1).await?.body, "b");
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_and_the_retry_goes_elsewhere() -> Result {
    let slow = upstream("slow").await?;
    let fast = upstream("fast").await?;
    slow.set_delay(Duration::from_millis(800));
    let routes = "        - name: all\n          route: { cluster: sf }\n";
    let clusters = cluster("sf", &[&slow, &fast], "    lb_policy: round_robin\n");
    let listener =
        "    request_timeout: 200ms\n    retry_policy: { on_timeout: true, max_retries: 1 }\n";
    let proxy = Proxy::start(config(routes, &clusters, listener)?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    for _ in 0..6 {
        let answer = client.call(1, 1).await?;
        assert_eq!(answer.body, "fast", "timed out on slow, retried on fast");
    }

    // Without retries the client gets the protocol's timeout error in time.
    let listener =
        "    request_timeout: 200ms\n    retry_policy: { on_timeout: false, max_retries: 0 }\n";
    let clusters = cluster("sf", &[&slow], "");
    let proxy = Proxy::start(config(routes, &clusters, listener)?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    let t = Instant::now();
    let answer = client.call(1, 1).await?;
    assert_eq!(answer.kind, MessageKind::Error);
    assert!(answer.body.contains("no reply within"), "{answer:?}");
    assert!(t.elapsed() < Duration::from_millis(700));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_without_closing_connections() -> Result {
    let a = upstream("a").await?;
    let b = upstream("b").await?;
    let clusters = [cluster("a", &[&a], ""), cluster("b", &[&b], "")].concat();
    let to = |c: &str| format!("        - name: all\n          route: {{ cluster: {c} }}\n");
    let proxy = Proxy::start(config(&to("a"), &clusters, "")?, builtin_codecs()).await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    assert_eq!(client.call(1, 1).await?.body, "a");

    let mut next = config(&to("b"), &clusters, "")?;
    proxy.reload(next.clone())?;
    assert_eq!(
        client.call(1, 1).await?.body,
        "b",
        "same connection, new routes"
    );

    next.listeners[0].max_connections = 5;
    let refused = proxy.reload(next).expect_err("needs a restart");
    assert!(refused.contains("need a restart"), "{refused}");
    assert_eq!(
        client.call(1, 1).await?.body,
        "b",
        "a refused reload changes nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_then_stops_accepting() -> Result {
    let slow = upstream("slow").await?;
    slow.set_delay(Duration::from_millis(300));
    let routes = "        - name: all\n          route: { cluster: s }\n";
    let proxy = Proxy::start(
        config(routes, &cluster("s", &[&slow], ""), "")?,
        builtin_codecs(),
    )
    .await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;
    let mut client = Client::connect(addr).await?;
    let in_flight = tokio::spawn(async move { client.call(1, 1).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let drainer = proxy.clone();
    let drain = tokio::spawn(async move { drainer.drain(Duration::from_secs(5)).await });
    let answer = in_flight.await??;
    assert_eq!(answer.body, "slow", "the in-flight request finished");
    drain.await?;
    assert_eq!(proxy.open_connections(), 0);
    let late = Client::connect(addr).await;
    if let Ok(mut late) = late {
        assert!(
            late.call(1, 1).await.is_err(),
            "no new requests after the drain"
        );
    }
    Ok(())
}

#[test]
fn validate_names_the_offending_key_and_exits_non_zero() -> Result {
    let dir = std::env::temp_dir().join(format!("mpp-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners:\n  - name: in\n    address: 127.0.0.1:0\n    codec: { name: minirpc }\n    route_config: { name: r, routes: [ { name: x, route: { cluster: missing } } ] }\n",
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meta-protocol-proxy"))
        .args(["validate", "--config"])
        .arg(&bad)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listeners[0].route_config.routes[0]: route `x` names cluster `missing`"),
        "{stderr}"
    );

    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/demo.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meta-protocol-proxy"))
        .args(["validate", "--config", demo])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_codec_cannot_encode_closes_the_connection_instead_of_hanging() -> Result {
    let a = upstream("a").await?;
    // MiniRPC has no room for an `x-trace` key, so the mutated reply cannot be written.
    let routes = "        - name: all\n          route: { cluster: a }\n          response_mutation: [ { key: x-trace, value: \"1\" } ]\n";
    let proxy = Proxy::start(
        config(routes, &cluster("a", &[&a], ""), "")?,
        builtin_codecs(),
    )
    .await?;
    let mut client = Client::connect(proxy.listener_addr("in").ok_or("listener")?).await?;
    let answer = tokio::time::timeout(Duration::from_secs(5), client.call(1, 1)).await?;
    assert!(answer.is_err(), "closed, not answered: {answer:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_downstream_connections_close_busy_ones_stay() -> Result {
    let a = upstream("a").await?;
    a.set_delay(Duration::from_millis(700));
    let routes = "        - name: all\n          route: { cluster: a }\n";
    let listener = "    idle_timeout: 400ms\n    request_timeout: 5s\n";
    let proxy = Proxy::start(
        config(routes, &cluster("a", &[&a], ""), listener)?,
        builtin_codecs(),
    )
    .await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;
    let mut idle = Client::connect(addr).await?;
    let mut busy = Client::connect(addr).await?;
    // A request in flight for longer than the idle timeout is answered: waiting for a reply
    // is not idleness.
    assert_eq!(busy.call(1, 1).await?.body, "a");
    a.set_delay(Duration::ZERO);
    // Calls every 150 ms keep a connection open past several idle periods.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(busy.call(1, 1).await?.body, "a");
    }
    // The connection that sent nothing for all that time was closed.
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_answer()).await?;
    assert!(closed.is_err(), "the idle connection is closed: {closed:?}");
    Ok(())
}

/// The threads of process `pid` named like tokio's multi-threaded workers.
#[cfg(target_os = "linux")]
fn tokio_workers(pid: u32) -> Result<usize> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm"))?;
        n += usize::from(comm.trim() == "tokio-rt-worker");
    }
    Ok(n)
}

#[cfg(target_os = "linux")]
#[test]
fn workers_sets_the_runtime_threads() -> Result {
    let dir = std::env::temp_dir().join(format!("mpp-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("workers.yaml");
    std::fs::write(
        &config,
        "listeners:\n  - name: in\n    address: 127.0.0.1:0\n    codec: { name: minirpc }\n    route_config: { name: r, routes: [ { name: all, route: { cluster: a } } ] }\nclusters:\n  - name: a\n    endpoints: [ { address: \"127.0.0.1:9\" } ]\n",
    )?;
    for (workers, expected) in [("3", 3), ("1", 0)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meta-protocol-proxy"))
            .args(["--workers", workers, "--log-level", "error", "--config"])
            .arg(&config)
            .spawn()?;
        std::thread::sleep(Duration::from_millis(500));
        let found = tokio_workers(child.id());
        child.kill()?;
        child.wait()?;
        // One worker is a single-threaded runtime: no worker threads besides the main one.
        assert_eq!(found?, expected, "--workers {workers}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meta-protocol-proxy"))
        .args(["--workers", "0", "--config"])
        .arg(&config)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers must be at least 1"));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limits_answer_over_limit_per_condition() -> Result {
    let a = upstream("a").await?;
    let routes = "        - name: all\n          route: { cluster: a }\n";
    // Five requests per hour for the listener, one for method 9; shared by connections.
    let listener = "    filters:\n      - local_ratelimit:\n          token_bucket: { max_tokens: 5, tokens_per_fill: 5, fill_interval: 1h }\n          conditions:\n            - match: { metadata: [ { name: method, exact: \"9\" } ] }\n              token_bucket: { max_tokens: 1, fill_interval: 1h }\n";
    let proxy = Proxy::start(
        config(routes, &cluster("a", &[&a], ""), listener)?,
        builtin_codecs(),
    )
    .await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;
    let over = codec_minirpc::status_of(meta_protocol_core::ErrorKind::OverLimit);
    let mut one = Client::connect(addr).await?;
    let mut two = Client::connect(addr).await?;
    let mut answered = 0;
    for i in 0..8 {
        let client = if i % 2 == 0 { &mut one } else { &mut two };
        let answer = client.call(1, 1).await?;
        match answer.kind {
            MessageKind::Response => answered += 1,
            _ => assert_eq!(answer.status, over, "{answer:?}"),
        }
    }
    assert_eq!(
        answered, 5,
        "the listener's bucket, across both connections"
    );
    // Method 9 has its own bucket: one call passes, the next is over the limit.
    assert_eq!(one.call(1, 9).await?.kind, MessageKind::Response);
    let second = one.call(1, 9).await?;
    assert_eq!((second.kind, second.status), (MessageKind::Error, over));
    assert_eq!(
        proxy
            .listener_stats("in")
            .ok_or("stats")?
            .rate_limited
            .get(),
        4
    );

    // A bucket that can never refill is refused, naming the key.
    let bad = "    filters:\n      - local_ratelimit: { token_bucket: { max_tokens: 5, fill_interval: 0s } }\n";
    let err = config(routes, &cluster("a", &[&a], ""), bad)
        .err()
        .ok_or("a zero interval must be refused")?
        .to_string();
    assert!(
        err.contains("listeners[0].filters[0].local_ratelimit.token_bucket.fill_interval"),
        "{err}"
    );
    Ok(())
}
