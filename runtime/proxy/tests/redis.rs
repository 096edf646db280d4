//! Real `redis-server`s behind the proxy: routing by key prefix and by command, consistent
//! hashing on the key, `redis-benchmark -P 16` through the proxy with no errors, and
//! stateful sessions (MULTI/EXEC, SUBSCRIBE) pinned to one upstream connection.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const INSTALL: &str = "bash .ci/setup (apt-get install -y redis-server redis-tools)";

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn redis() -> Result<Redis> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server ({e}); install it: {INSTALL}"))?;
    let r = Redis { child, port };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("redis-server did not start".into())
}

/// Sends one command as a RESP array and reads its reply.
async fn call(stream: &mut TcpStream, args: &[&str]) -> Result<String> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(out.as_bytes()).await?;
    read_reply(stream).await
}

/// Reads one whole RESP2 reply (simple, bulk, or an array of those).
async fn read_reply(stream: &mut TcpStream) -> Result<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(n) = complete(&text) {
            if n != text.len() {
                return Err(format!("more than one reply arrived: {text:?}").into());
            }
            return Ok(text);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if n == 0 {
            return Err("connection closed".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Length of the first complete reply in `text`.
fn complete(text: &str) -> Option<usize> {
    let line_end = text.find("\r\n")? + 2;
    let head = &text[..line_end - 2];
    match head.as_bytes().first()? {
        b'$' => {
            let len: i64 = head[1..].parse().ok()?;
            if len < 0 {
                return Some(line_end);
            }
            let end = line_end + len as usize + 2;
            (text.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = head[1..].parse().ok()?;
            let mut at = line_end;
            for _ in 0..n.max(0) {
                at += complete(&text[at..])?;
            }
            Some(at)
        }
        _ => Some(line_end),
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run redis-cli ({e}); install it: {INSTALL}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_the_proxy() -> Result {
    let users = redis().await?;
    let shard_a = redis().await?;
    let shard_b = redis().await?;
    let yaml = format!(
        r#"
listeners:
  - name: redis
    address: 127.0.0.1:0
    codec: {{ name: redis }}
    route_config:
      name: redis
      routes:
        - name: users
          match: {{ metadata: [ {{ name: key, prefix: "user:" }} ] }}
          route: {{ cluster: users }}
        - name: keyless
          match: {{ metadata: [ {{ name: key, present: false }} ] }}
          route: {{ cluster: users }}
        - name: sharded
          route: {{ cluster: shards, hash_policy: [key] }}
clusters:
  - name: users
    endpoints: [ {{ address: "127.0.0.1:{}" }} ]
  - name: shards
    lb_policy: maglev
    endpoints: [ {{ address: "127.0.0.1:{}" }}, {{ address: "127.0.0.1:{}" }} ]
"#,
        users.port, shard_a.port, shard_b.port
    );
    let proxy = Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let port = proxy.listener_addr("redis").ok_or("listener")?.port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).await?;

    // By key prefix.
    assert_eq!(call(&mut c, &["SET", "user:1", "ann"]).await?, "+OK\r\n");
    assert_eq!(redis_cli(users.port, &["GET", "user:1"])?, "ann");
    assert_eq!(call(&mut c, &["GET", "user:1"]).await?, "$3\r\nann\r\n");

    // Consistent hashing on the key: each key lives on exactly one shard, both shards used,
    // and reads find what writes stored.
    for i in 0..200 {
        let k = format!("item:{i}");
        assert_eq!(call(&mut c, &["SET", &k, &i.to_string()]).await?, "+OK\r\n");
    }
    let on_a: usize = redis_cli(shard_a.port, &["DBSIZE"])?.parse()?;
    let on_b: usize = redis_cli(shard_b.port, &["DBSIZE"])?.parse()?;
    assert_eq!(on_a + on_b, 200);
    assert!(on_a > 40 && on_b > 40, "both shards used: {on_a}/{on_b}");
    for i in (0..200).step_by(7) {
        let k = format!("item:{i}");
        let v = i.to_string();
        assert_eq!(
            call(&mut c, &["GET", &k]).await?,
            format!("${}\r\n{v}\r\n", v.len())
        );
    }

    // Keyless commands by route.
    assert_eq!(call(&mut c, &["PING"]).await?, "+PONG\r\n");

    // A transaction pins its connection: every command of it reaches the same server, and
    // EXEC answers for all of them.
    let mut tx = TcpStream::connect(("127.0.0.1", port)).await?;
    assert_eq!(call(&mut tx, &["MULTI"]).await?, "+OK\r\n");
    assert_eq!(
        call(&mut tx, &["SET", "user:2", "bo"]).await?,
        "+QUEUED\r\n"
    );
    assert_eq!(
        call(&mut tx, &["INCR", "item:counter"]).await?,
        "+QUEUED\r\n"
    );
    assert_eq!(call(&mut tx, &["EXEC"]).await?, "*2\r\n+OK\r\n:1\r\n");
    assert_eq!(
        redis_cli(users.port, &["GET", "item:counter"])?,
        "1",
        "pinned to users"
    );
    assert_eq!(call(&mut tx, &["GET", "user:2"]).await?, "$2\r\nbo\r\n");

    // Pub/sub: the subscriber's connection is pinned, and messages published through
    // another connection are pushed to it.
    let mut sub = TcpStream::connect(("127.0.0.1", port)).await?;
    assert_eq!(
        call(&mut sub, &["SUBSCRIBE", "news"]).await?,
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(call(&mut c, &["PUBLISH", "news", "hello"]).await?, ":1\r\n");
    assert_eq!(
        read_reply(&mut sub).await?,
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(call(&mut c, &["GET", "user:1"]).await?, "$3\r\nann\r\n");

    // redis-benchmark, pipelined 16 deep, through the proxy.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("redis-benchmark")
            .args([
                "-p",
                &port.to_string(),
                "-q",
                "-P",
                "16",
                "-n",
                "20000",
                "-c",
                "8",
            ])
            .args(["-t", "get,set", "-r", "1000"])
            .output()
    })
    .await?
    .map_err(|e| format!("cannot run redis-benchmark ({e}); install it: {INSTALL}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("SET:") && stdout.contains("GET:"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("ERR") && !stdout.contains("ERR"),
        "{stdout}\n{stderr}"
    );
    Ok(())
}
