//! Real Kafka clients and a real Kafka-compatible broker through a relay that decodes every
//! frame with this codec and re-encodes it.
//!
//! The broker is tansu with memory storage. Kafka clients learn broker addresses from Metadata
//! responses, so the broker advertises the relay's address: every connection a client opens,
//! bootstrap or not, goes through the relay. The relay uses [`Role::Server`] towards the client
//! and [`Role::Client`] towards the broker, checks that each re-encoded frame is byte-identical
//! to the one it read, and records each frame's kind and API metadata.
//!
//! Two clients: kafka-python (flexible request versions) and kafkajs (non-flexible ones). Each
//! creates a topic, produces with acks=1, acks=all and acks=0 (tansu answers acks=0 produces,
//! unlike Apache Kafka), consumes everything back from the beginning in a consumer group
//! (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit, LeaveGroup) and prints JSON
//! of what it saw. The test checks that every message came back, in order per partition, that
//! the committed offsets are the ends of the partitions, and that the relay saw the expected
//! APIs without a single codec error.
//!
//! Needs, and fails (never skips) without:
//! - `tansu` on `PATH`: `cargo install tansu --features dynostore --locked`
//! - kafka-python for `python3`: `pip install kafka-python`
//! - kafkajs: `npm ci --prefix codecs/kafka/tests/js`

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codec_kafka::{DEFAULT_FRAME_LIMIT, KafkaCodec, is_flexible, keys};
use meta_protocol_core::{Codec, MessageKind, Role};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const TANSU_INSTALL: &str = "cargo install tansu --features dynostore --locked";
const KAFKA_PYTHON_INSTALL: &str = "pip install kafka-python";
const PARTITIONS: usize = 3;
const COUNT: usize = 30;
const ACKS: [&str; 3] = ["1", "all", "0"];

/// The consumer group protocol and everything around it, as both clients use it.
const EXPECTED_APIS: [&str; 13] = [
    "ApiVersions",
    "Metadata",
    "CreateTopics",
    "Produce",
    "ListOffsets",
    "Fetch",
    "FindCoordinator",
    "JoinGroup",
    "SyncGroup",
    "Heartbeat",
    "OffsetCommit",
    "OffsetFetch",
    "LeaveGroup",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kafka-interop-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A free port on 127.0.0.1 (bound and released: a small race, fine for a test).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A tansu broker on its own port with memory storage, advertising `advertised`.
struct Tansu {
    child: Child,
    log: PathBuf,
}

impl Tansu {
    fn start(port: u16, advertised: SocketAddr, dir: &Path) -> Tansu {
        let log = dir.join("tansu.log");
        let out = File::create(&log).expect("tansu log");
        let err = out.try_clone().expect("tansu log");
        let mut child = Command::new("tansu")
            .arg("broker")
            .args(["--cluster-id", "codec-kafka-interop"])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `tansu` ({e}): install it with `{TANSU_INSTALL}`")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tansu exited early ({status}); installed with `{TANSU_INSTALL}`?\n{}",
                    read_log(&log)
                );
            }
            if StdStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port}:\n{}",
                read_log(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu { child, log }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One frame the relay passed.
#[derive(Debug, Clone)]
struct Seen {
    request: bool,
    kind: MessageKind,
    api_name: Option<String>,
    api_key: Option<i16>,
    api_version: Option<i16>,
}

#[derive(Debug, Default)]
struct RelayLog {
    frames: Vec<Seen>,
    errors: Vec<String>,
    connections: usize,
}

type Shared<T> = Arc<Mutex<T>>;

/// Accepts clients on `listener` and connects each to `upstream`.
async fn relay(listener: TcpListener, upstream: SocketAddr, log: Shared<RelayLog>) {
    while let Ok((down, _)) = listener.accept().await {
        let up = match TcpStream::connect(upstream).await {
            Ok(up) => up,
            Err(e) => {
                log.lock().unwrap().errors.push(format!("connect: {e}"));
                continue;
            }
        };
        log.lock().unwrap().connections += 1;
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        // The downstream codec decodes requests and encodes responses; the upstream one
        // encodes requests and decodes responses. Each direction uses both.
        let server = Arc::new(Mutex::new(KafkaCodec::new(
            Role::Server,
            DEFAULT_FRAME_LIMIT,
        )));
        let client = Arc::new(Mutex::new(KafkaCodec::new(
            Role::Client,
            DEFAULT_FRAME_LIMIT,
        )));
        let (down_r, down_w) = down.into_split();
        let (up_r, up_w) = up.into_split();
        tokio::spawn(pump(
            down_r,
            up_w,
            server.clone(),
            client.clone(),
            true,
            log.clone(),
        ));
        tokio::spawn(pump(up_r, down_w, client, server, false, log.clone()));
    }
}

/// The whole frame at the front of `buf`, if it is all there.
fn peek_frame(buf: &BytesMut) -> Option<Vec<u8>> {
    let size = usize::try_from(i32::from_be_bytes(buf.get(..4)?.try_into().ok()?)).ok()?;
    buf.get(..4 + size).map(<[u8]>::to_vec)
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    decoder: Shared<KafkaCodec>,
    encoder: Shared<KafkaCodec>,
    request: bool,
    log: Shared<RelayLog>,
) {
    let what = if request { "request" } else { "response" };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: while from.read_buf(&mut buf).await.unwrap_or(0) > 0 {
        let mut out = BytesMut::new();
        loop {
            let original = peek_frame(&buf);
            let decoded = decoder.lock().unwrap().decode(&mut buf);
            let msg = match decoded {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    log.lock()
                        .unwrap()
                        .errors
                        .push(format!("decode {what}: {e}"));
                    break 'read;
                }
            };
            let md = msg.metadata();
            let int = |k: &str| md.get(k).and_then(|v| v.to_string().parse::<i16>().ok());
            let seen = Seen {
                request,
                kind: msg.kind(),
                api_name: md.get_str(keys::API_NAME).map(str::to_owned),
                api_key: int(keys::API_KEY),
                api_version: int(keys::API_VERSION),
            };
            let start = out.len();
            let encoded = encoder.lock().unwrap().encode(&msg, &mut out);
            let mut log = log.lock().unwrap();
            if let Err(e) = encoded {
                log.errors.push(format!("encode {what} {seen:?}: {e}"));
            } else if original.as_deref() != Some(&out[start..]) {
                log.errors
                    .push(format!("{what} {seen:?} not re-encoded byte-identical"));
            }
            log.frames.push(seen);
        }
        if to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Runs `program args...` with a deadline; returns its stdout, panicking with its stderr when
/// it fails.
fn run_client(mut cmd: Command, dir: &Path, name: &str, install: &str) -> String {
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name} ({e}): `{install}`"));
    let deadline = Instant::now() + Duration::from_secs(50);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} timed out:\n{}", read_log(&stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{name} failed ({status}):\n{}",
        read_log(&stderr)
    );
    std::fs::read_to_string(&stdout).expect("client output")
}

/// Everything a client run needs: a relay on its own runtime and a broker advertising it.
struct Rig {
    _rt: tokio::runtime::Runtime,
    _tansu: Tansu,
    relay: SocketAddr,
    log: Shared<RelayLog>,
    dir: PathBuf,
    tansu_log: PathBuf,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let dir = scratch(name);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = StdListener::bind("127.0.0.1:0").expect("bind relay");
        let relay_addr = listener.local_addr().expect("relay addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let broker_port = free_port();
        let upstream = SocketAddr::from(([127, 0, 0, 1], broker_port));
        let log = Arc::new(Mutex::new(RelayLog::default()));
        {
            let _guard = rt.enter();
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            rt.spawn(relay(listener, upstream, log.clone()));
        }
        let tansu = Tansu::start(broker_port, relay_addr, &dir);
        let tansu_log = tansu.log.clone();
        Rig {
            _rt: rt,
            _tansu: tansu,
            relay: relay_addr,
            log,
            dir,
            tansu_log,
        }
    }

    /// Runs the client, checks its output and the relay's log.
    fn check(&self, name: &str, out: &str, flexible: bool) {
        // Let the last responses and closes pass the relay.
        std::thread::sleep(Duration::from_millis(200));
        let log = self.log.lock().unwrap();
        let context = || {
            format!(
                "client output: {out}\ntansu log tail:\n{}",
                read_log(&self.tansu_log)
            )
        };
        assert!(
            log.errors.is_empty(),
            "{name}: relay errors: {:#?}\n{}",
            log.errors,
            context()
        );

        let json: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{name}: output is not JSON ({e}): {out}"));
        check_messages(name, &json);
        report(name, &log);
        check_frames(name, &log, flexible);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_messages(name: &str, json: &Value) {
    // What each partition must hold, in order.
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS];
    for acks in ACKS {
        for i in 0..COUNT {
            expected[i % PARTITIONS].push(format!("{acks}-{i}"));
        }
    }
    let consumed = json["consumed"].as_array().expect("consumed");
    let mut got: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS];
    for rec in consumed {
        let p = rec[0].as_u64().expect("partition") as usize;
        let offset = rec[1].as_i64().expect("offset");
        let value = rec[2].as_str().expect("value").to_owned();
        got[p].push((offset, value));
    }
    for (p, (want, got)) in expected.iter().zip(&got).enumerate() {
        let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values, *want,
            "{name}: partition {p}: consumed values, in order"
        );
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        let first = offsets.first().copied().unwrap_or(0);
        let contiguous: Vec<i64> = (first..first + offsets.len() as i64).collect();
        assert_eq!(offsets, contiguous, "{name}: partition {p}: offsets");
        let end = first + offsets.len() as i64;
        assert_eq!(
            json["committed"][p.to_string()].as_i64(),
            Some(end),
            "{name}: partition {p}: committed offset: {}",
            json["committed"]
        );
    }
    for acks in ["1", "all"] {
        let produced = json["produced"][acks].as_array().expect("produced");
        assert!(
            !produced.is_empty() && produced.iter().all(|r| r[1].as_i64() >= Some(0)),
            "{name}: acks={acks}: produce results {produced:?}"
        );
    }
}

fn report(name: &str, log: &RelayLog) {
    let mut versions: BTreeMap<&str, BTreeSet<i16>> = BTreeMap::new();
    for f in log.frames.iter().filter(|f| f.request) {
        if let (Some(n), Some(v)) = (f.api_name.as_deref(), f.api_version) {
            versions.entry(n).or_default().insert(v);
        }
    }
    let count = |pred: &dyn Fn(&Seen) -> bool| log.frames.iter().filter(|f| pred(f)).count();
    let produce = |request: bool| {
        count(&|f: &Seen| f.request == request && f.api_name.as_deref() == Some("Produce"))
    };
    println!(
        "{name}: {} connections, {} frames; Produce: {} requests ({} acks=0), {} responses; \
         request versions: {versions:?}",
        log.connections,
        log.frames.len(),
        produce(true),
        count(&|f: &Seen| f.kind == MessageKind::Oneway),
        produce(false),
    );
}

fn check_frames(name: &str, log: &RelayLog, flexible: bool) {
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    let mut responses: BTreeMap<String, usize> = BTreeMap::new();
    let mut any_flexible = false;
    for f in &log.frames {
        let api = f
            .api_name
            .clone()
            .unwrap_or_else(|| panic!("{name}: a frame without api_name: {f:?}"));
        let (key, version) = (f.api_key.expect("api_key"), f.api_version.expect("version"));
        if f.request {
            assert!(
                matches!(f.kind, MessageKind::Request | MessageKind::Oneway),
                "{name}: {f:?}"
            );
            assert!(
                f.kind == MessageKind::Request || api == "Produce",
                "{name}: only acks=0 produces are one-way: {f:?}"
            );
            any_flexible |= is_flexible(key, version);
            *requests.entry(api).or_default() += 1;
        } else {
            assert!(
                matches!(f.kind, MessageKind::Response | MessageKind::Error),
                "{name}: {f:?}"
            );
            *responses.entry(api).or_default() += 1;
        }
    }
    for api in EXPECTED_APIS {
        assert!(
            requests.get(api).is_some_and(|&n| n > 0),
            "{name}: no {api} request through the relay: {requests:?}"
        );
        assert!(
            responses.get(api).is_some_and(|&n| n > 0),
            "{name}: no {api} response through the relay: {responses:?}"
        );
    }
    for (api, n) in &responses {
        // A request still in flight when its client closes gets no response.
        assert!(
            requests.get(api).is_some_and(|r| r >= n),
            "{name}: {n} {api} responses for {:?} requests",
            requests.get(api)
        );
    }
    let oneway = log
        .frames
        .iter()
        .filter(|f| f.kind == MessageKind::Oneway)
        .count();
    assert!(oneway > 0, "{name}: no acks=0 produce through the relay");
    assert_eq!(
        any_flexible, flexible,
        "{name}: flexible request versions expected: {flexible}"
    );
}

#[test]
fn kafka_python_flexible_versions_through_the_relay() {
    let check = Command::new("python3")
        .args(["-c", "import kafka"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): needs {KAFKA_PYTHON_INSTALL}"));
    assert!(
        check.status.success(),
        "kafka-python is missing: `{KAFKA_PYTHON_INSTALL}`\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let rig = Rig::start("python");
    let mut cmd = Command::new("python3");
    cmd.arg(manifest_dir().join("tests/interop/kafka_python.py"))
        .arg(rig.relay.to_string())
        .arg("py-orders")
        .arg(PARTITIONS.to_string())
        .arg(COUNT.to_string())
        .arg("py-group")
        .args(ACKS);
    let out = run_client(cmd, &rig.dir, "kafka-python", KAFKA_PYTHON_INSTALL);
    rig.check("kafka-python", &out, true);
}

#[test]
fn kafkajs_non_flexible_versions_through_the_relay() {
    let js = manifest_dir().join("tests/js");
    let install = format!("npm ci --prefix {}", js.display());
    assert!(
        js.join("node_modules/kafkajs").exists(),
        "kafkajs is not installed: run `{install}` (needs node and npm)"
    );
    let rig = Rig::start("kafkajs");
    let mut cmd = Command::new("node");
    cmd.arg(js.join("kafkajs.js"))
        .arg(rig.relay.to_string())
        .arg("js-orders")
        .arg(PARTITIONS.to_string())
        .arg(COUNT.to_string())
        .arg("js-group")
        .args(ACKS);
    let out = run_client(cmd, &rig.dir, "kafkajs", &install);
    rig.check("kafkajs", &out, false);
}
