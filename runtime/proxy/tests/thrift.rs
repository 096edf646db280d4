//! Real Python Thrift clients and servers (Debian `python3-thrift`, `thrift-compiler`) through
//! the proxy: routing by method, an 80/20 split within 5% over 1,000 calls, plain, multiplexed
//! and THeader clients, and Thrift's own exception for an unrouted method.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PYTHON: &str = "/usr/bin/python3";
const INSTALL: &str = "bash .ci/setup (apt-get install -y python3-thrift thrift-compiler)";

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../codecs/thrift/tests/interop")
}

fn generate() -> Result<PathBuf> {
    let out = std::env::temp_dir().join(format!("proxy-thrift-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let ok = Command::new("thrift")
        .args(["--gen", "py", "-out"])
        .arg(&out)
        .arg(peer_dir().join("calc.thrift"))
        .status()
        .map_err(|e| format!("cannot run `thrift` ({e}); install it: {INSTALL}"))?
        .success();
    if !ok {
        return Err("thrift --gen py failed".into());
    }
    Ok(out)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn args(gen_dir: &Path, mode: &str, port: u16, combo: (&str, &str, bool)) -> Vec<String> {
    vec![
        peer_dir().join("peer.py").display().to_string(),
        gen_dir.display().to_string(),
        mode.into(),
        port.to_string(),
        combo.0.into(),
        combo.1.into(),
        if combo.2 { "1" } else { "0" }.into(),
    ]
}

async fn server(gen_dir: &Path, name: &str, combo: (&str, &str, bool)) -> Result<(Peer, u16)> {
    let port = free_port()?;
    let child = Command::new(PYTHON)
        .args(args(gen_dir, "server", port, combo))
        .env("PEER_NAME", name)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {PYTHON} ({e}); install: {INSTALL}"))?;
    let peer = Peer(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((peer, port));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("python thrift server {name} did not start").into())
}

async fn client(
    gen_dir: &Path,
    mode: &str,
    port: u16,
    combo: (&str, &str, bool),
) -> Result<String> {
    let a = args(gen_dir, mode, port, combo);
    let out = tokio::task::spawn_blocking(move || Command::new(PYTHON).args(a).output()).await??;
    if !out.status.success() {
        return Err(format!(
            "python client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn number_after(json: &str, key: &str) -> Option<u32> {
    let at = json.find(&format!("\"{key}\": "))? + key.len() + 4;
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_thrift_through_the_proxy_routes_by_method_and_splits() -> Result {
    let gen_dir = generate()?;
    for combo in [
        ("binary", "framed", false),
        ("compact", "header", true),
        ("binary", "buffered", true),
    ] {
        let (_v1, p1) = server(&gen_dir, "v1", combo).await?;
        let (_v2, p2) = server(&gen_dir, "v2", combo).await?;
        let yaml = format!(
            r#"
listeners:
  - name: thrift
    address: 127.0.0.1:0
    codec: {{ name: thrift }}
    route_config:
      name: calc
      routes:
        - name: add
          match: {{ metadata: [ {{ name: method, exact: add }} ] }}
          route: {{ cluster: v1 }}
        - name: div-and-note
          match: {{ metadata: [ {{ name: method, regex: "div|note" }} ] }}
          route: {{ cluster: v1 }}
        - name: echo
          match: {{ metadata: [ {{ name: method, exact: echo }} ] }}
          route: {{ weighted_clusters: [ {{ name: v1, weight: 80 }}, {{ name: v2, weight: 20 }} ] }}
clusters:
  - name: v1
    endpoints: [ {{ address: "127.0.0.1:{p1}" }} ]
  - name: v2
    endpoints: [ {{ address: "127.0.0.1:{p2}" }} ]
"#
        );
        let proxy =
            Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
        let port = proxy.listener_addr("thrift").ok_or("listener")?.port();

        let counts = client(&gen_dir, "count:1000", port, combo).await?;
        let v1 = number_after(&counts, "v1").unwrap_or(0);
        let v2 = number_after(&counts, "v2").unwrap_or(0);
        assert_eq!(v1 + v2, 1000, "{combo:?}: {counts}");
        assert!(
            (750..=850).contains(&v1),
            "{combo:?}: 80/20 within 5%: {counts}"
        );
        assert_eq!(
            number_after(&counts, "add"),
            Some(42),
            "{combo:?}: {counts}"
        );

        // The full behaviour script: `note` is a oneway call with no route, and `missing` has
        // no route either: the proxy answers it with Thrift's own TApplicationException.
        let out = client(&gen_dir, "client", port, combo).await?;
        assert!(out.contains("\"add\": 5"), "{combo:?}: {out}");
        assert!(out.contains("\"echo_big\": true"), "{combo:?}: {out}");
        assert!(
            out.contains("\"missing\": \"TApplicationException:1\""),
            "{combo:?}: {out}"
        );
        assert!(out.contains("\"after_error\": 42"), "{combo:?}: {out}");
        let routes = proxy.route_counts("thrift");
        assert_eq!(routes[0], ("add".to_owned(), 3), "{combo:?}");
    }
    let _ = std::fs::remove_dir_all(&gen_dir);
    Ok(())
}
