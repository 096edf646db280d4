//! The admin endpoint: a small HTTP/1.0 responder on its own address.
//!
//! | path | answer |
//! |---|---|
//! | `/ready` | `200 ready`, or `503 draining` during shutdown |
//! | `/stats` | counters, one `name: value` per line |
//! | `/config_dump` | the configuration in force, as YAML |

use std::fmt::Write as _;
use std::sync::Weak;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Proxy;

pub(crate) async fn serve(
    listener: TcpListener,
    proxy: Weak<Proxy>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let Some(proxy) = proxy.upgrade() else {
            return;
        };
        let draining = *shutdown.borrow();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = respond(&proxy, path, draining);
            let response = format!(
                "HTTP/1.0 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn respond(proxy: &Proxy, path: &str, draining: bool) -> (&'static str, String) {
    match path {
        "/ready" if draining => ("503 Service Unavailable", "draining\n".into()),
        "/ready" => ("200 OK", "ready\n".into()),
        "/stats" => ("200 OK", stats(proxy)),
        "/config_dump" => match serde_norway::to_string(&proxy.config()) {
            Ok(yaml) => ("200 OK", yaml),
            Err(e) => ("500 Internal Server Error", format!("{e}\n")),
        },
        _ => (
            "404 Not Found",
            "try /ready, /stats or /config_dump\n".into(),
        ),
    }
}

/// Every counter, `name: value` per line.
pub fn stats(proxy: &Proxy) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "downstream.open_connections: {}",
        proxy.open_connections()
    );
    for (name, _, handle) in &proxy.listeners {
        let s = &handle.stats;
        for (k, v) in [
            ("connections", s.connections.get()),
            ("refused", s.refused.get()),
            ("framing_errors", s.framing_errors.get()),
            ("requests", s.requests.get()),
            ("local_replies", s.local_replies.get()),
            ("heartbeats", s.heartbeats.get()),
            ("rate_limited", s.rate_limited.get()),
        ] {
            let _ = writeln!(out, "listener.{name}.{k}: {v}");
        }
        for (route, n) in proxy.route_counts(name) {
            let _ = writeln!(out, "listener.{name}.route.{route}.requests: {n}");
        }
        if let Some(rds) = proxy.rds_stats(name) {
            let version = proxy.rds_version(name).unwrap_or_default();
            let _ = writeln!(out, "listener.{name}.rds.version: {version}");
            let _ = writeln!(out, "listener.{name}.rds.accepted: {}", rds.accepted.get());
            let _ = writeln!(out, "listener.{name}.rds.rejected: {}", rds.rejected.get());
        }
        let rt = handle.current();
        let mut clusters: Vec<_> = rt.clusters.values().collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        for c in clusters {
            let s = &c.stats;
            for (k, v) in [
                ("requests", s.requests.get()),
                ("replies", s.replies.get()),
                ("timeouts", s.timeouts.get()),
                ("failures", s.failures.get()),
                ("overflows", s.overflows.get()),
                ("ejections", s.ejections.get()),
                ("connections_opened", s.connections_opened.get()),
            ] {
                let _ = writeln!(out, "listener.{name}.cluster.{}.{k}: {v}", c.name);
            }
            for (addr, n) in c.endpoint_replies() {
                let _ = writeln!(
                    out,
                    "listener.{name}.cluster.{}.endpoint.{addr}.replies: {n}",
                    c.name
                );
            }
        }
    }
    out
}
