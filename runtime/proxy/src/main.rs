//! `meta-protocol-proxy`: run the proxy, check a config, or run the bundled demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs, demo};

#[derive(Parser)]
#[command(
    version,
    about = "Request-level routing, load balancing and resilience for any layer-7 protocol"
)]
struct Cli {
    /// The configuration file (YAML; see docs/configuration.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter). Default: info
    /// (warn for `demo`, whose own output is the point).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration and exit: 0 when valid, 1 with a message naming the offending
    /// key otherwise.
    Validate,
    /// Run the bundled demo: MiniRPC upstreams, the proxy with demo/demo.yaml, and a client.
    Demo {
        /// Calls the client makes.
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// Run one of the demo's MiniRPC upstream servers (for benchmarks): it answers every call
    /// with its name.
    DemoUpstream {
        /// `ip:port` to listen on.
        #[arg(long)]
        listen: String,
        /// The name it answers with.
        #[arg(long, default_value = "upstream")]
        name: String,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    meta_protocol_runtime::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Some(Command::Demo { .. }) => "warn",
        _ => "info",
    };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    let filter = match tracing_subscriber::EnvFilter::try_new(level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--log-level {level}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let codecs = builtin_codecs();
    let load = |path: &Option<PathBuf>| -> Result<Config, String> {
        let path = path.as_ref().ok_or("--config FILE is required")?;
        Config::load(path, &codecs).map_err(|e| format!("{}: {e}", path.display()))
    };
    // One worker is a single-threaded runtime (no work stealing, no cross-thread wakeups);
    // more are a multi-threaded one with that many workers.
    let mut builder = match cli.workers {
        Some(0) => {
            eprintln!("--workers must be at least 1");
            return ExitCode::FAILURE;
        }
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Validate) => match load(&cli.config) {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::DemoUpstream { listen, name }) => {
            let served = runtime.block_on(async {
                let server = demo::UpstreamServer::start(&listen, &name).await?;
                eprintln!("{} listening on {}", server.name, server.addr);
                tokio::signal::ctrl_c().await?;
                Ok::<(), std::io::Error>(())
            });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo-upstream: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Demo { requests }) => match runtime.block_on(demo::run(requests)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("invalid configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config, cli.config, cli.drain_timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>, drain: Duration) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let codecs = builtin_codecs();
    let proxy = Proxy::start(config, codecs.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                let Some(path) = &path else { continue };
                match Config::load(path, &codecs).map_err(|e| e.to_string()).and_then(|c| proxy.reload(c)) {
                    Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload refused; the previous configuration stays in force"),
                }
            }
        }
    }
    tracing::info!(deadline = ?drain, "draining");
    proxy.drain(drain).await;
    tracing::info!("stopped");
    Ok(())
}
