//! Kafka through the proxy against a real broker: tansu (memory storage) behind a `kafka`
//! listener, driven by kafka-python.
//!
//! Kafka clients learn broker addresses from Metadata responses, so the broker advertises the
//! proxy's listener address: every connection the client opens, bootstrap or not, goes through
//! the proxy. The client creates a topic, produces with acks=1 and acks=0, consumes everything
//! back in order in a consumer group and commits (codec-kafka's own interop client script,
//! `codecs/kafka/tests/interop/kafka_python.py`). A second route sends Produce requests for
//! `audit-*` topics to a cluster whose only endpoint is down: the client must get the
//! protocol's error response at once, not a timeout. The admin `/stats` counters show that
//! the requests went through the proxy.
//!
//! Needs, and fails (never skips) without:
//! - `tansu` on `PATH`: `cargo install tansu --features dynostore --locked`
//! - kafka-python for `python3`: `pip install kafka-python`
//!
//! (`bash .ci/setup` installs both.)

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TANSU_INSTALL: &str = "cargo install tansu --features dynostore --locked (or bash .ci/setup)";
const KAFKA_PYTHON_INSTALL: &str = "pip install kafka-python (or bash .ci/setup)";
const PARTITIONS: usize = 3;
const COUNT: usize = 30;
const ACKS: [&str; 2] = ["1", "0"];
const TOPIC: &str = "orders";
const AUDIT_TOPIC: &str = "audit-log";
const AUDIT_SENDS: usize = 3;

/// Produces to `audit-*` with retries off and reports, per send, the outcome and how long it
/// took. `request_timeout_ms` is 20 s: a request the proxy left unanswered would show up as a
/// timeout after that long.
const AUDIT_CLIENT: &str = r#"
import json, sys, time
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap, topic, sends = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="proxy-audit")
admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
admin.close()
producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="proxy-audit", acks=1,
                         retries=0, linger_ms=0, request_timeout_ms=20000, max_block_ms=20000)
results = []
for i in range(sends):
    start = time.monotonic()
    try:
        md = producer.send(topic, value=b"audit-%d" % i, partition=0).get(timeout=40)
        results.append({"offset": md.offset, "seconds": time.monotonic() - start})
    except Exception as e:
        results.append({"error": type(e).__name__, "errno": getattr(e, "errno", None),
                        "seconds": time.monotonic() - start})
producer.close(timeout=5)
print(json.dumps(results))
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("proxy-kafka-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A port nothing listens on right now (bound and released: a small race, fine for a test).
fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// === tansu ===

/// A tansu broker with memory storage on `port`, advertising `advertised` to its clients.
struct Tansu {
    child: Child,
    log: PathBuf,
}

impl Tansu {
    fn start(port: u16, advertised: SocketAddr, dir: &Path) -> Result<Tansu> {
        let log = dir.join("tansu.log");
        let out = File::create(&log)?;
        let child = Command::new("tansu")
            .arg("broker")
            .args(["--cluster-id", "meta-protocol-proxy-kafka"])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stderr(out.try_clone()?)
            .stdout(out)
            .spawn()
            .map_err(|e| format!("cannot run `tansu` ({e}); install it: {TANSU_INSTALL}"))?;
        let mut tansu = Tansu { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while StdStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = tansu.child.try_wait()? {
                return Err(format!("tansu exited ({status}):\n{}", tail(&tansu.log)).into());
            }
            if Instant::now() > deadline {
                return Err(format!("tansu is not listening:\n{}", tail(&tansu.log)).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(tansu)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === clients ===

/// Runs `cmd` on a blocking thread with a deadline; its stdout, or an error with its stderr.
async fn run(mut cmd: Command, dir: &Path, name: &str) -> Result<String> {
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {name} ({e}); {KAFKA_PYTHON_INSTALL}"))?;
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} timed out:\n{}", tail(&stderr)).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(format!("{name} failed ({status}):\n{}", tail(&stderr)).into());
        }
        Ok(std::fs::read_to_string(&stdout)?)
    })
    .await?
}

fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(args);
    cmd
}

/// The admin endpoint's `/stats`, as `name -> value`.
async fn stats(admin: SocketAddr) -> Result<BTreeMap<String, u64>> {
    let mut s = TcpStream::connect(admin).await?;
    s.write_all(b"GET /stats HTTP/1.0\r\n\r\n").await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await??;
    let (_, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    Ok(body
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

fn kafka_stats(stats: &BTreeMap<String, u64>) -> Vec<String> {
    stats
        .iter()
        .filter(|(k, _)| k.starts_with("listener.kafka."))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect()
}

fn stat(stats: &BTreeMap<String, u64>, key: &str) -> u64 {
    stats.get(key).copied().unwrap_or(0)
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_through_the_proxy_to_tansu() -> Result {
    let check = python(&["-c", "import kafka"])
        .output()
        .map_err(|e| format!("cannot run python3 ({e}); {KAFKA_PYTHON_INSTALL}"))?;
    if !check.status.success() {
        return Err(format!("kafka-python is missing: {KAFKA_PYTHON_INSTALL}").into());
    }
    let dir = scratch("python");
    let broker_port = free_port()?;
    let dead_port = free_port()?;
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: kafka
    address: 127.0.0.1:0
    codec: {{ name: kafka }}
    request_timeout: 10s
    route_config:
      name: kafka
      routes:
        - name: audit
          match:
            metadata:
              - {{ name: api_name, exact: Produce }}
              - {{ name: topic, prefix: "audit-" }}
          route: {{ cluster: audit }}
        - name: broker
          route: {{ cluster: broker }}
clusters:
  - name: broker
    endpoints: [ {{ address: "127.0.0.1:{broker_port}" }} ]
  - name: audit
    connect_timeout: 500ms
    outlier_detection: {{ consecutive_errors: 1, base_ejection_time: 60s, max_ejection_time: 60s, max_ejection_percent: 100 }}
    endpoints: [ {{ address: "127.0.0.1:{dead_port}" }} ]
"#
    );
    let proxy = Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let listener = proxy.listener_addr("kafka").ok_or("listener")?;
    let admin = proxy.admin_addr().ok_or("admin")?;
    let tansu = Tansu::start(broker_port, listener, &dir)?;
    let context = |what: &str| format!("{what}\ntansu log tail:\n{}", tail(&tansu.log));

    // Topic, produce (acks=1, acks=0), consume in a group, commit.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../codecs/kafka/tests/interop/kafka_python.py");
    let mut cmd = python(&[&script.to_string_lossy(), &listener.to_string(), TOPIC]);
    cmd.args([&PARTITIONS.to_string(), &COUNT.to_string(), "proxy-group"])
        .args(ACKS);
    let out = run(cmd, &dir, "kafka-python")
        .await
        .map_err(|e| context(&e.to_string()))?;
    let json: Value = serde_json::from_str(out.trim())
        .map_err(|e| context(&format!("output is not JSON ({e}): {out}")))?;
    check_consumed(&json)?;

    let before = stats(admin).await?;
    // Every connection went through the proxy. Were the broker to advertise its own address,
    // the proxy would see only the four clients' bootstrap connections (ApiVersions and
    // Metadata, 8 requests); through the proxy it sees the broker and coordinator connections
    // too, and the whole group protocol (about 50 requests).
    let main_flow = kafka_stats(&before);
    println!("after the main flow:\n{}", main_flow.join("\n"));
    assert!(
        stat(&before, "listener.kafka.connections") >= 8,
        "{main_flow:#?}"
    );
    assert!(
        stat(&before, "listener.kafka.cluster.broker.requests") >= 30,
        "{main_flow:#?}"
    );
    assert!(
        stat(&before, "listener.kafka.cluster.broker.replies") >= 30,
        "{main_flow:#?}"
    );
    assert_eq!(
        stat(&before, "listener.kafka.local_replies"),
        0,
        "{main_flow:#?}"
    );
    assert_eq!(stat(&before, "listener.kafka.route.audit.requests"), 0);

    // Produce requests for audit-* topics go to the dead cluster and are answered at once.
    let out = run(
        python(&[
            "-c",
            AUDIT_CLIENT,
            &listener.to_string(),
            AUDIT_TOPIC,
            &AUDIT_SENDS.to_string(),
        ]),
        &dir,
        "audit",
    )
    .await
    .map_err(|e| context(&e.to_string()))?;
    let results: Vec<Value> = serde_json::from_str(out.trim())?;
    println!("audit produce results: {results:?}");
    assert_eq!(results.len(), AUDIT_SENDS);
    for r in &results {
        let seconds = r["seconds"].as_f64().ok_or("seconds")?;
        let errno = r["errno"].as_i64();
        // 13 NETWORK_EXCEPTION (the connection failed) or 8 BROKER_NOT_AVAILABLE (the endpoint
        // is ejected): the codec's replies for these failures.
        assert!(
            matches!(errno, Some(8 | 13)),
            "a protocol error response, not {r}"
        );
        assert!(seconds < 3.0, "answered at once, not timed out: {r}");
    }
    assert_eq!(
        results.last().and_then(|r| r["errno"].as_i64()),
        Some(8),
        "once ejected, the cluster has no healthy endpoint: {results:?}"
    );

    let after = stats(admin).await?;
    let report = kafka_stats(&after);
    println!("at the end:\n{}", report.join("\n"));
    assert_eq!(stat(&after, "listener.kafka.framing_errors"), 0);
    assert_eq!(
        stat(&after, "listener.kafka.route.audit.requests"),
        AUDIT_SENDS as u64,
        "{report:#?}"
    );
    assert_eq!(
        stat(&after, "listener.kafka.cluster.audit.replies"),
        0,
        "{report:#?}"
    );
    assert!(
        stat(&after, "listener.kafka.local_replies") >= AUDIT_SENDS as u64,
        "{report:#?}"
    );
    drop(tansu);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Every message came back, in order per partition, with contiguous offsets; the committed
/// offsets are the ends of the partitions; acks=1 produces were acknowledged with offsets.
fn check_consumed(json: &Value) -> Result {
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS];
    for acks in ACKS {
        for i in 0..COUNT {
            expected[i % PARTITIONS].push(format!("{acks}-{i}"));
        }
    }
    let mut got: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS];
    for rec in json["consumed"].as_array().ok_or("consumed")? {
        let p = rec[0].as_u64().ok_or("partition")? as usize;
        let offset = rec[1].as_i64().ok_or("offset")?;
        let value = rec[2].as_str().ok_or("value")?.to_owned();
        got.get_mut(p)
            .ok_or("partition out of range")?
            .push((offset, value));
    }
    for (p, (want, got)) in expected.iter().zip(&got).enumerate() {
        let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, *want, "partition {p}: consumed values, in order");
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        let contiguous: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, contiguous, "partition {p}: offsets");
        assert_eq!(
            json["committed"][p.to_string()].as_i64(),
            Some(offsets.len() as i64),
            "partition {p}: committed offset: {}",
            json["committed"]
        );
    }
    let acked = json["produced"]["1"].as_array().ok_or("produced")?;
    assert!(
        acked.len() == COUNT && acked.iter().all(|r| r[1].as_i64() >= Some(0)),
        "acks=1 produce results: {acked:?}"
    );
    Ok(())
}
