//! Real Apache Thrift peers (Python, Debian `python3-thrift` and `thrift-compiler`) talking
//! through a relay that decodes and re-encodes every frame with this codec, in every
//! protocol/transport combination, multiplexed or not: calls, a 40,000-character string with
//! emoji, a declared exception, a oneway call, an unknown method and a THeader header added
//! by the relay all behave as they do directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use codec_thrift::{ThriftCodec, ThriftConfig};
use meta_protocol_core::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PYTHON: &str = "/usr/bin/python3";
const INSTALL: &str = "apt-get install -y python3-thrift thrift-compiler";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Generates the Python code for the test IDL into a fresh directory.
fn generate() -> Result<PathBuf> {
    let out = std::env::temp_dir().join(format!("thrift-interop-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let status = Command::new("thrift")
        .args(["--gen", "py", "-out"])
        .arg(&out)
        .arg(interop_dir().join("calc.thrift"))
        .status()
        .map_err(|e| format!("cannot run `thrift` ({e}); install it: {INSTALL}"))?;
    if !status.success() {
        return Err("thrift --gen py failed".into());
    }
    let probe = Command::new(PYTHON)
        .args(["-c", "import thrift"])
        .status()
        .map_err(|e| format!("cannot run {PYTHON} ({e}); install it: {INSTALL}"))?;
    if !probe.success() {
        return Err(format!("{PYTHON} has no thrift module; install it: {INSTALL}").into());
    }
    Ok(out)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer_args(gen_dir: &Path, mode: &str, port: u16, combo: &Combo) -> Vec<String> {
    vec![
        interop_dir().join("peer.py").display().to_string(),
        gen_dir.display().to_string(),
        mode.into(),
        port.to_string(),
        combo.protocol.into(),
        combo.transport.into(),
        if combo.mux { "1".into() } else { "0".into() },
    ]
}

async fn start_server(gen_dir: &Path, combo: &Combo) -> Result<(Server, u16)> {
    let port = free_port()?;
    let child = Command::new(PYTHON)
        .args(peer_args(gen_dir, "server", port, combo))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let server = Server(child);
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((server, port));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("python server for {combo:?} did not start").into())
}

async fn run_client(gen_dir: &Path, port: u16, combo: &Combo) -> Result<serde_json_lite::Object> {
    let args = peer_args(gen_dir, "client", port, combo);
    let out =
        tokio::task::spawn_blocking(move || Command::new(PYTHON).args(args).output()).await??;
    if !out.status.success() {
        return Err(format!(
            "python client for {combo:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json_lite::parse(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Relays one connection at a time from `listener` to `upstream`, decoding and re-encoding
/// every frame; with `mutate`, adds the header `x-relay: 1` to each request.
async fn relay(listener: TcpListener, upstream: SocketAddr, mutate: bool) {
    while let Ok((down, _)) = listener.accept().await {
        let Ok(up) = TcpStream::connect(upstream).await else {
            return;
        };
        let (dr, dw) = down.into_split();
        let (ur, uw) = up.into_split();
        tokio::spawn(pump(dr, uw, mutate));
        tokio::spawn(pump(ur, dw, false));
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mutate: bool,
) -> Result {
    let mut decoder = ThriftCodec::new(ThriftConfig::default());
    let mut encoder = ThriftCodec::new(ThriftConfig::default());
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    loop {
        if from.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        while let Some(mut msg) = decoder.decode(&mut buf)? {
            if mutate && msg.metadata().get_str("transport") == Some("header") {
                msg.metadata_mut().insert("x-relay", "1");
            }
            encoder.encode(&msg, &mut out)?;
        }
        to.write_all(&out).await?;
        out.clear();
    }
}

#[derive(Debug, Clone)]
struct Combo {
    protocol: &'static str,
    transport: &'static str,
    mux: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peers_behave_the_same_through_the_codec() -> Result {
    let gen_dir = generate()?;
    let mut combos = Vec::new();
    for protocol in ["binary", "compact"] {
        for transport in ["framed", "buffered", "header"] {
            for mux in [false, true] {
                combos.push(Combo {
                    protocol,
                    transport,
                    mux,
                });
            }
        }
    }
    for combo in &combos {
        let (_server, port) = start_server(&gen_dir, combo).await?;
        let direct = run_client(&gen_dir, port, combo).await?;
        assert_eq!(direct.get("add"), Some("5"), "{combo:?}: {direct:?}");
        assert_eq!(direct.get("echo_big"), Some("true"), "{combo:?}");
        assert_eq!(
            direct.get("div"),
            Some("\"DivByZero:b is zero\""),
            "{combo:?}"
        );
        assert_eq!(direct.get("notes"), Some("\"hello\""), "{combo:?}");
        assert_eq!(
            direct.get("missing"),
            Some("\"TApplicationException:1\""),
            "{combo:?}"
        );
        assert_eq!(direct.get("after_error"), Some("42"), "{combo:?}");

        for mutate in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let relay_port = listener.local_addr()?.port();
            let task = tokio::spawn(relay(listener, ([127, 0, 0, 1], port).into(), mutate));
            let relayed = run_client(&gen_dir, relay_port, combo).await?;
            task.abort();
            let mut expected = direct.clone();
            if mutate && combo.transport == "header" {
                expected.set("header_relay", "\"1\"");
            }
            // The server keeps notes across connections.
            let notes = expected.get("notes").unwrap_or_default().to_owned();
            let relayed_notes = relayed.get("notes").unwrap_or_default().to_owned();
            assert!(
                relayed_notes.ends_with("hello\""),
                "{combo:?}: {relayed_notes} vs {notes}"
            );
            let strip = |mut o: serde_json_lite::Object| {
                o.set("notes", "");
                o
            };
            assert_eq!(
                strip(relayed),
                strip(expected),
                "{combo:?} (mutate: {mutate}): through the codec differs from direct"
            );
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&gen_dir) {
        eprintln!("leaving {}: {e}", gen_dir.display());
    }
    Ok(())
}

/// Just enough JSON for the client's flat output object: values kept as their JSON text.
mod serde_json_lite {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub(super) struct Object(Vec<(String, String)>);

    impl Object {
        pub(super) fn get(&self, k: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        }
        pub(super) fn set(&mut self, k: &str, v: &str) {
            match self.0.iter_mut().find(|(key, _)| key == k) {
                Some(e) => e.1 = v.to_owned(),
                None => self.0.push((k.to_owned(), v.to_owned())),
            }
        }
    }

    /// Parses `{"k": v, ...}` where values are numbers, booleans or strings without `", "`.
    pub(super) fn parse(s: &str) -> Object {
        let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
        let mut out = Object::default();
        for part in inner.split(", \"") {
            let part = part.trim_start_matches('"');
            if let Some((k, v)) = part.split_once("\": ") {
                out.0.push((k.to_owned(), v.trim().to_owned()));
            }
        }
        out
    }
}
