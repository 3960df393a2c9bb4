//! `hookway-proxy`: the data plane binary.
//!
//! Snapshots come from the controller (`--controller URL`) or a folder of manifests
//! (`--manifests DIR`, standalone mode); `--check` validates a folder and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use tokio::sync::watch;

use hookway_crds::snapshot::Snapshot;
use hookway_proxy::canonical::{EscapedSlashes, PathOptions};
use hookway_proxy::chain::ChainBuilder;
use hookway_proxy::source::controller::ControllerSourceConfig;
use hookway_proxy::standalone::{self, OutputFormat, StandaloneOptions};
use hookway_proxy::{Limits, ProxyConfig, ProxyServer, RequestRules};

mod allocator;

/// mimalloc: the request path allocates and frees many small buffers per request; glibc's
/// malloc/free took ~6 % of the proxy's CPU in profiles (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// hookway data plane.
#[derive(Parser, Debug)]
#[command(name = "hookway-proxy", version, about)]
struct Args {
    /// Plain HTTP listener.
    #[arg(long, env = "HOOKWAY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// HTTPS listener (certificates by SNI from the snapshot).
    #[arg(long, env = "HOOKWAY_HTTPS_ADDR", default_value = "0.0.0.0:8443")]
    https_addr: SocketAddr,
    /// Do not listen for HTTPS.
    #[arg(long, env = "HOOKWAY_NO_HTTPS")]
    no_https: bool,
    /// Admin listener (/healthz, /readyz, /metrics, /config).
    #[arg(long, env = "HOOKWAY_ADMIN_ADDR", default_value = "0.0.0.0:9901")]
    admin_addr: SocketAddr,
    /// Certificate (PEM) served for unknown SNI; without it such handshakes fail.
    #[arg(long, env = "HOOKWAY_DEFAULT_CERT", requires = "default_key")]
    default_cert: Option<PathBuf>,
    /// Private key (PEM) of --default-cert.
    #[arg(long, env = "HOOKWAY_DEFAULT_KEY", requires = "default_cert")]
    default_key: Option<PathBuf>,
    /// Largest request head in bytes (at least 8192).
    #[arg(long, env = "HOOKWAY_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "HOOKWAY_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: u64,
    /// Seconds to receive a request head (and, for HTTP/1, idle keep-alive).
    #[arg(long, env = "HOOKWAY_HEADER_READ_TIMEOUT", default_value_t = 10)]
    header_read_timeout: u64,
    /// Seconds between HTTP/2 keep-alive pings.
    #[arg(long, env = "HOOKWAY_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Open client connections at most.
    #[arg(long, env = "HOOKWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Merge runs of `/` in request paths into one before routing (`true` or `false`).
    #[arg(long, env = "HOOKWAY_MERGE_SLASHES", default_value_t = true, action = clap::ArgAction::Set)]
    merge_slashes: bool,
    /// `%2F`, `%5C` and `\` in request paths: `reject` (400), `keep` (never a separator) or
    /// `decode` (into `/`).
    #[arg(long, env = "HOOKWAY_ESCAPED_SLASHES", default_value = "reject")]
    escaped_slashes: EscapedSlashes,
    /// Proxies in front of hookway (addresses or CIDRs, comma-separated) whose
    /// `X-Forwarded-For` is believed; from anyone else it is overwritten.
    #[arg(long, env = "HOOKWAY_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Seconds in-flight requests may take after SIGTERM/SIGINT.
    #[arg(long, env = "HOOKWAY_GRACE", default_value_t = 30)]
    grace: u64,
    /// Request-serving threads; 1 runs everything on one thread (best when pinned to a core).
    /// Default: one per CPU.
    #[arg(long, env = "HOOKWAY_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Log format.
    #[arg(long, env = "HOOKWAY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "HOOKWAY_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Standalone: serve the manifests of this folder (watched).
    #[arg(long, env = "HOOKWAY_MANIFESTS", conflicts_with = "controller")]
    manifests: Option<PathBuf>,
    /// With --manifests: validate the folder, print the result and exit.
    #[arg(long, requires = "manifests")]
    check: bool,
    /// Output of --check.
    #[arg(long, value_enum, default_value = "text")]
    output: OutputFormat,
    /// Standalone: GatewayPlugins in this namespace are cluster-wide.
    #[arg(long, env = "HOOKWAY_ROOT_NAMESPACE", default_value = "hookway-system")]
    root_namespace: String,
    /// Standalone: namespace of manifests that name none.
    #[arg(long, env = "HOOKWAY_DEFAULT_NAMESPACE", default_value = "default")]
    default_namespace: String,
    /// Controller stream URL (`https://host:port`).
    #[arg(long, env = "HOOKWAY_CONTROLLER")]
    controller: Option<String>,
    /// PEM CA bundle trusted for the controller's certificate.
    #[arg(long, env = "HOOKWAY_CONTROLLER_CA", requires = "controller")]
    controller_ca: Option<PathBuf>,
    /// File holding the bearer token for the controller (re-read on every connection).
    #[arg(long, env = "HOOKWAY_CONTROLLER_TOKEN_FILE", requires = "controller")]
    controller_token_file: Option<PathBuf>,
    /// Cache of the last snapshot on local disk, served when the controller is unreachable at start.
    #[arg(long, env = "HOOKWAY_SNAPSHOT_CACHE", requires = "controller")]
    snapshot_cache: Option<PathBuf>,
    /// Serve one compiled snapshot (JSON, as the controller sends it) from this file; for
    /// debugging and benchmarks.
    #[arg(long, env = "HOOKWAY_SNAPSHOT", conflicts_with_all = ["manifests", "controller"])]
    snapshot: Option<PathBuf>,
    /// Print the plugin catalogue (every kind this proxy runs, with its config's JSON Schema) and
    /// exit. The controller validates with this document (`crds/src/catalogue/builtin.json`).
    #[arg(long)]
    print_catalogue: bool,
}

fn init_logs(args: &Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?}", args.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_catalogue {
        print!(
            "{}",
            hookway_proxy::plugins::builtin().catalogue().document()
        );
        return Ok(());
    }
    init_logs(&args)?;
    let runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let registry = hookway_proxy::plugins::builtin();
    // `wasm` modules may come from local files only when this proxy's config is local too.
    #[cfg(feature = "wasm")]
    if args.controller.is_none() {
        hookway_proxy::plugins::wasm::allow_file_modules();
    }

    let options = StandaloneOptions {
        root_namespace: args.root_namespace.clone(),
        default_namespace: args.default_namespace.clone(),
    };
    if args.check {
        let dir = args
            .manifests
            .as_deref()
            .context("--check needs --manifests DIR")?;
        let ok = standalone::check(
            dir,
            &options,
            registry.catalogue(),
            args.output,
            &mut std::io::stdout().lock(),
        )?;
        std::process::exit(if ok { 0 } else { 1 });
    }

    let (tx, rx) = watch::channel::<Option<Arc<Snapshot>>>(None);
    match (&args.manifests, &args.controller, &args.snapshot) {
        (Some(dir), _, _) => start_standalone(dir, options, &registry, tx, rx.clone()).await?,
        (None, Some(url), _) => {
            let source = controller_source(&args, url)?;
            return serve(&args, ChainBuilder::new(registry), rx, Some((source, tx))).await;
        }
        (None, None, Some(file)) => {
            let snapshot = load_snapshot(file)?;
            // Applied at bind; the runtime stays when the sender goes away.
            tx.send_replace(Some(Arc::new(snapshot)));
        }
        (None, None, None) => {
            bail!("nothing to serve: give --manifests DIR, --controller URL or --snapshot FILE")
        }
    }
    serve(&args, ChainBuilder::new(registry), rx, None).await
}

/// Reads a JSON snapshot, sealing it when it has no hash.
fn load_snapshot(file: &std::path::Path) -> anyhow::Result<Snapshot> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let snapshot: Snapshot = serde_json::from_slice(&text)
        .with_context(|| format!("parsing snapshot {}", file.display()))?;
    Ok(if snapshot.hash.is_empty() {
        snapshot.seal()
    } else {
        snapshot
    })
}

/// Standalone mode: compile the folder, publish its snapshot on `tx` and keep watching it.
/// Returns once the first snapshot is published; fails when the folder cannot be loaded.
async fn start_standalone(
    dir: &std::path::Path,
    options: StandaloneOptions,
    registry: &hookway_proxy::plugin::Registry,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    mut first: watch::Receiver<Option<Arc<Snapshot>>>,
) -> anyhow::Result<()> {
    let mut task = tokio::spawn(standalone::watch(
        dir.to_path_buf(),
        options,
        registry.catalogue().clone(),
        tx,
    ));
    tokio::select! {
        published = first.wait_for(Option::is_some) => {
            published.context("standalone loader stopped")?;
            Ok(())
        }
        ended = &mut task => match ended {
            Ok(Err(e)) => Err(e).with_context(|| format!("loading manifests from {}", dir.display())),
            Ok(Ok(())) => bail!("standalone loader stopped before publishing"),
            Err(e) => Err(e).context("standalone loader panicked"),
        },
    }
}

/// Controller mode: how to reach the controller's snapshot stream.
fn controller_source(args: &Args, url: &str) -> anyhow::Result<ControllerSourceConfig> {
    let ca = args
        .controller_ca
        .clone()
        .context("--controller needs --controller-ca FILE")?;
    let token = args
        .controller_token_file
        .clone()
        .context("--controller needs --controller-token-file FILE")?;
    let proxy_id = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("hookway-proxy-{}", std::process::id()));
    let mut config = ControllerSourceConfig::new(url, ca, token, proxy_id);
    config.snapshot_cache = args.snapshot_cache.clone();
    Ok(config)
}

async fn serve(
    args: &Args,
    chains: ChainBuilder,
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    controller: Option<(ControllerSourceConfig, watch::Sender<Option<Arc<Snapshot>>>)>,
) -> anyhow::Result<()> {
    let default_cert = match (&args.default_cert, &args.default_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).with_context(|| format!("reading {}", c.display()))?,
            std::fs::read(k).with_context(|| format!("reading {}", k.display()))?,
        )),
        _ => None,
    };
    let config = ProxyConfig {
        http_addr: Some(args.http_addr),
        https_addr: (!args.no_https).then_some(args.https_addr),
        admin_addr: Some(args.admin_addr),
        default_cert,
        limits: Limits {
            max_header_bytes: args.max_header_bytes,
            max_body_bytes: args.max_body_bytes,
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            tls_handshake_timeout: Duration::from_secs(args.header_read_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_connections: args.max_connections,
        },
        rules: RequestRules {
            path: PathOptions {
                merge_slashes: args.merge_slashes,
                escaped_slashes: args.escaped_slashes,
            },
            trusted_proxies: args.trusted_proxies.clone(),
        },
        grace: Duration::from_secs(args.grace),
    };
    let server = ProxyServer::bind(config, chains, rx).await?;
    if let Some((source, tx)) = controller {
        let verdicts = server.state().verdicts();
        tokio::spawn(async move {
            if let Err(e) = hookway_proxy::source::controller::run(source, tx, Some(verdicts)).await
            {
                tracing::error!(error = %e, "controller stream client stopped");
            }
        });
    }
    tracing::info!(http = ?server.http_addr(), https = ?server.https_addr(), admin = ?server.admin_addr(), "hookway-proxy listening");
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
