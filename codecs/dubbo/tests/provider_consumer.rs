//! A real Dubbo provider and real Dubbo consumers, talking directly and through a relay that
//! decodes and re-encodes every frame with `DubboCodec`.
//!
//! Provider: sofa-rpc-node's `RpcServer` with the dubbo protocol (npm `dubbo-remoting`),
//! Hessian2, no registry (`tests/js/provider.js`). Consumers: sofa-rpc-node's `RpcClient`
//! with the same protocol (`tests/js/consumer.js`, which also sends heartbeats) and dubbo2.js's
//! `DirectlyDubbo` (`tests/js/consumer_dubbo2.js`, its own encoder and decoder).
//!
//! Each consumer runs three times: directly, through the relay unmodified, and through the
//! relay adding the attachment `x-relay: 1` to every request. The results must be the same
//! every time, except that the provider reports the added attachment in the third run.
//!
//! Needs `node` and the packages in `tests/js` (install with
//! `npm ci --prefix codecs/dubbo/tests/js`). Fails, rather than skips, when they are missing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codec_dubbo::{DEFAULT_FRAME_LIMIT, DubboCodec};
use meta_protocol_core::{Codec, MessageKind, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PACKAGES: [&str; 4] = ["sofa-rpc-node", "dubbo-remoting", "dubbo2.js", "hessian.js"];

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn setup_hint() -> String {
    format!("npm ci --prefix {}", js_dir().display())
}

fn check_packages() {
    for p in PACKAGES {
        assert!(
            js_dir().join("node_modules").join(p).exists(),
            "the npm package {p} is not installed: run `{}` (needs node and npm)",
            setup_hint()
        );
    }
}

fn node(script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(js_dir()).arg(script);
    cmd
}

fn spawn(mut cmd: Command) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run node ({e}): install Node.js and run `{}`",
            setup_hint()
        )
    })
}

/// The provider process; killed on drop (it also exits when its stdin closes).
struct Provider {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl Provider {
    fn start() -> Self {
        check_packages();
        let mut cmd = node("provider.js");
        cmd.arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn(cmd);
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("provider output");
        let port = line
            .trim()
            .strip_prefix(r#"{"port":"#)
            .and_then(|s| s.strip_suffix('}'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("provider did not start: {line:?}"));
        Provider {
            child,
            _stdin: stdin,
            port,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a consumer printed: one `(name, json)` per result, in order.
type Results = Vec<(String, String)>;

fn run_consumer(script: &str, port: u16) -> Results {
    let mut cmd = node(script);
    cmd.arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node {script} {port} did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().expect("reader").expect("utf-8 stdout");
    let err = err.join().expect("reader").expect("utf-8 stderr");
    assert!(status.success(), "node {script} {port} failed: {err}");
    out.lines()
        .map(|l| {
            let (k, v) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn get<'a>(results: &'a Results, name: &str) -> &'a str {
    results
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {results:?}"))
}

/// `"key":N` in a JSON object of numbers.
fn number(json: &str, key: &str) -> usize {
    let start = json
        .find(&format!(r#""{key}":"#))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a number")
}

/// Frames the relay saw, by direction and kind, plus anything that went wrong.
#[derive(Default, Debug)]
struct Seen {
    to_provider: HashMap<MessageKind, usize>,
    to_consumer: HashMap<MessageKind, usize>,
    mutated: usize,
    /// `service:version#method` of every request, from the codec's metadata.
    calls: Vec<String>,
    closed: usize,
    errors: Vec<String>,
}

/// A TCP relay in front of `upstream` that decodes every frame with `DubboCodec` and encodes
/// it again; with `mutate`, every request gets the attachment `x-relay: 1`.
struct Relay {
    runtime: tokio::runtime::Runtime,
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl Relay {
    fn start(upstream: u16, mutate: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        runtime.spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let result = relay_connection(down, upstream, mutate, s.clone()).await;
                    let mut seen = s.lock().unwrap();
                    if let Err(e) = result {
                        seen.errors.push(e);
                    }
                    seen.closed += 1;
                });
            }
        });
        Relay {
            runtime,
            port,
            seen,
        }
    }

    /// Waits until `n` connections have closed, then returns what was seen.
    fn finish(self, n: usize) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.seen.lock().unwrap().closed < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.runtime.shutdown_background();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn relay_connection(
    down: TcpStream,
    upstream: u16,
    mutate: bool,
    seen: Arc<Mutex<Seen>>,
) -> Result<(), String> {
    down.set_nodelay(true).map_err(|e| e.to_string())?;
    let up = TcpStream::connect(("127.0.0.1", upstream))
        .await
        .map_err(|e| format!("connect upstream: {e}"))?;
    up.set_nodelay(true).map_err(|e| e.to_string())?;
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    // Requests: decoded as the server side of the consumer's connection, encoded as the client
    // side of the provider's. Responses the other way round.
    let requests = pump(
        down_r,
        up_w,
        (Role::Server, Role::Client),
        mutate,
        seen.clone(),
        true,
    );
    let responses = pump(
        up_r,
        down_w,
        (Role::Client, Role::Server),
        false,
        seen,
        false,
    );
    let (a, b) = tokio::join!(requests, responses);
    a.and(b)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    (decode_role, encode_role): (Role, Role),
    mutate: bool,
    seen: Arc<Mutex<Seen>>,
    to_provider: bool,
) -> Result<(), String> {
    let mut decoder = DubboCodec::new(DEFAULT_FRAME_LIMIT, decode_role);
    let mut encoder = DubboCodec::new(DEFAULT_FRAME_LIMIT, encode_role);
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut output = BytesMut::new();
    loop {
        // A peer that exits may reset its socket; between frames that is just a close.
        let n = match from.read_buf(&mut input).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            if !input.is_empty() {
                return Err(format!("{} bytes of a partial frame at EOF", input.len()));
            }
            let _ = to.shutdown().await;
            return Ok(());
        }
        let before = (!mutate).then(|| input.clone());
        while let Some(mut msg) = decoder
            .decode(&mut input)
            .map_err(|e| format!("decode: {e}"))?
        {
            {
                let mut seen = seen.lock().unwrap();
                let counts = if to_provider {
                    &mut seen.to_provider
                } else {
                    &mut seen.to_consumer
                };
                *counts.entry(msg.kind()).or_default() += 1;
                if msg.kind() == MessageKind::Request {
                    let md = msg.metadata();
                    let call = format!(
                        "{}:{}#{}",
                        md.get_str("service").unwrap_or("?"),
                        md.get_str("version").unwrap_or("?"),
                        md.get_str("method").unwrap_or("?")
                    );
                    seen.calls.push(call);
                }
                if mutate && msg.kind() == MessageKind::Request {
                    msg.metadata_mut().insert("x-relay", "1");
                    seen.mutated += 1;
                }
            }
            encoder
                .encode(&msg, &mut output)
                .map_err(|e| format!("encode: {e}"))?;
        }
        if let Some(before) = before {
            // Unmodified frames are re-emitted byte for byte.
            let consumed = before.len() - input.len();
            if output[..] != before[..consumed] {
                return Err(format!(
                    "{consumed} relayed bytes changed without a mutation"
                ));
            }
        }
        if !output.is_empty() {
            // E.g. a heartbeat ack for a consumer that has just exited.
            if let Err(e) = to.write_all(&output).await {
                return match e.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => Ok(()),
                    _ => Err(e.to_string()),
                };
            }
            output.clear();
        }
    }
}

fn count(map: &HashMap<MessageKind, usize>, kind: MessageKind) -> usize {
    map.get(&kind).copied().unwrap_or(0)
}

/// Runs `script` directly, through a plain relay and through a mutating relay, and checks the
/// three agree. Returns the direct results and what the two relays saw.
fn three_runs(script: &str) -> (Results, Seen, Seen) {
    let provider = Provider::start();
    let direct = run_consumer(script, provider.port);

    let relay = Relay::start(provider.port, false);
    let plain = run_consumer(script, relay.port);
    let plain_seen = relay.finish(1);
    assert!(plain_seen.errors.is_empty(), "{:?}", plain_seen.errors);

    let relay = Relay::start(provider.port, true);
    let mutated = run_consumer(script, relay.port);
    let mutated_seen = relay.finish(1);
    assert!(mutated_seen.errors.is_empty(), "{:?}", mutated_seen.errors);

    let names = |r: &Results| r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&direct), names(&plain));
    assert_eq!(names(&direct), names(&mutated));
    for (name, value) in &direct {
        if name == "heartbeats" {
            continue; // timing-dependent counts, checked by the caller
        }
        assert_eq!(value, get(&plain, name), "{name}: direct vs relayed");
        if name == "whoami" {
            // The provider saw the attachment the relay added (keys are sorted, and
            // "x-relay" sorts after every key the consumers send).
            let expected = value.replacen(r#""}}"#, r#"","x-relay":"1"}}"#, 1);
            assert_ne!(&expected, value);
            assert_eq!(get(&mutated, name), expected, "{name}: mutated run");
        } else {
            assert_eq!(value, get(&mutated, name), "{name}: direct vs mutated");
        }
    }

    // Results every consumer must get.
    assert_eq!(get(&direct, "sayHello"), r#"{"value":"Hello world 😀"}"#);
    let echo = get(&direct, "echo");
    assert!(echo.contains(r#""length":40000"#), "{echo}");
    assert!(echo.contains(r#""roundTrip":true"#), "{echo}");
    assert!(
        get(&direct, "fail").contains(r#""error":"boom from provider""#),
        "a thrown exception arrives as an error: {}",
        get(&direct, "fail")
    );
    assert!(
        get(&direct, "exception").contains(r#""error":"Error: exception object from provider""#),
        "a returned java.lang.Exception arrives as an error: {}",
        get(&direct, "exception")
    );
    assert!(!get(&direct, "whoami").contains("x-relay"));
    assert_eq!(
        get(&direct, "concurrent"),
        r#"[{"value":"Hello a"},{"value":"b"}]"#
    );

    // Seven calls each run: five answered with a value, `fail` (status 80) and `exception`
    // (result flag 0) as errors; every call of the mutated run was mutated.
    for seen in [&plain_seen, &mutated_seen] {
        assert_eq!(
            count(&seen.to_provider, MessageKind::Request),
            7,
            "{seen:?}"
        );
        assert_eq!(
            count(&seen.to_consumer, MessageKind::Response),
            5,
            "{seen:?}"
        );
        assert_eq!(count(&seen.to_consumer, MessageKind::Error), 2, "{seen:?}");
    }
    for seen in [&plain_seen, &mutated_seen] {
        let mut methods: Vec<&str> = seen
            .calls
            .iter()
            .map(|c| {
                c.strip_prefix("org.apache.dubbo.demo.DemoService:1.0.0#")
                    .unwrap_or_else(|| panic!("request metadata: {c}"))
            })
            .collect();
        methods.sort_unstable();
        let expected = [
            "echo",
            "echo",
            "exception",
            "fail",
            "sayHello",
            "sayHello",
            "whoami",
        ];
        assert_eq!(methods, expected);
    }
    assert_eq!(plain_seen.mutated, 0);
    assert_eq!(mutated_seen.mutated, 7);
    (direct, plain_seen, mutated_seen)
}

#[test]
fn sofa_rpc_node_consumer_and_provider_through_a_decoding_relay() {
    let started = Instant::now();
    let (direct, plain, mutated) = three_runs("consumer.js");
    // sofa-rpc-node sends heartbeats; the consumer waits for 3 acks. Every heartbeat and every
    // ack crossed the relay as a Heartbeat frame, and the acks came back.
    let hb = get(&direct, "heartbeats");
    assert!(number(hb, "acked") >= 3, "{hb}");
    for seen in [&plain, &mutated] {
        let sent = count(&seen.to_provider, MessageKind::Heartbeat);
        let acked = count(&seen.to_consumer, MessageKind::Heartbeat);
        assert!(sent >= 3 && acked >= 3, "{seen:?}");
        assert!(acked <= sent, "{seen:?}");
    }
    eprintln!("sofa-rpc-node: 3 runs in {:?}", started.elapsed());
}

#[test]
fn dubbo2_js_consumer_and_sofa_rpc_node_provider_through_a_decoding_relay() {
    let started = Instant::now();
    let (direct, plain, mutated) = three_runs("consumer_dubbo2.js");
    // dubbo2.js sends heartbeats only every 180 s: none here.
    assert!(direct.iter().all(|(k, _)| k != "heartbeats"));
    for seen in [&plain, &mutated] {
        assert_eq!(count(&seen.to_provider, MessageKind::Heartbeat), 0);
    }
    eprintln!("dubbo2.js: 3 runs in {:?}", started.elapsed());
}
