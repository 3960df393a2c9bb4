use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hookway_controller::compile_loop::Debounce;
use hookway_controller::module_fetch::FetchConfig;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use tokio::net::TcpListener;

/// hookway controller: watches hookway.dev objects, streams snapshots to proxies, writes status.
#[derive(Parser)]
#[command(name = "hookway-controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRD manifests generated from the API types (or write them to a folder).
    Crds {
        /// Write one file per CRD into this folder instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file (default: in-cluster config, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated (default: all).
    #[arg(long, env = "HOOKWAY_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Root namespace: GatewayPlugins there are cluster-wide; the Lease lives there.
    /// Default: the pod's namespace (service account file or POD_NAMESPACE), else hookway-system.
    #[arg(long, env = "HOOKWAY_ROOT_NAMESPACE")]
    root_namespace: Option<String>,
    /// Stream listener (TLS, HTTP/2) for proxies.
    #[arg(long, env = "HOOKWAY_STREAM_ADDR", default_value = "0.0.0.0:8443")]
    stream_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "HOOKWAY_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// File with the bearer token proxies must present.
    #[arg(long, env = "HOOKWAY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM certificate chain of the stream listener.
    #[arg(long, env = "HOOKWAY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the stream listener.
    #[arg(long, env = "HOOKWAY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// This replica's identity for the Lease (default: POD_NAME or the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, env = "HOOKWAY_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// The proxies' Service, `namespace/name` (or `name` in the root namespace); its addresses (load balancer, external or
    /// cluster IPs) become Gateways' `status.addresses`.
    #[arg(long, env = "HOOKWAY_PROXY_SERVICE")]
    proxy_service: Option<String>,
    /// PEM CA bundle trusted for `https://` wasm module URLs instead of the system's roots.
    #[arg(long, env = "HOOKWAY_MODULE_CA_FILE")]
    module_ca_file: Option<PathBuf>,
    /// Longest time one fetch of a wasm module URL may take, seconds.
    #[arg(long, env = "HOOKWAY_MODULE_FETCH_TIMEOUT", default_value_t = 30)]
    module_fetch_timeout: u64,
    /// Largest wasm module fetched from a URL, bytes.
    #[arg(long, env = "HOOKWAY_MODULE_MAX_BYTES", default_value_t = 16 << 20)]
    module_max_bytes: usize,
    /// Log format.
    #[arg(long, env = "HOOKWAY_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Log level / filter (tracing EnvFilter syntax).
    #[arg(long, env = "HOOKWAY_LOG", default_value = "info")]
    log_level: String,
}

const SA_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

fn root_namespace(flag: Option<String>) -> String {
    flag.or_else(|| {
        std::fs::read_to_string(SA_NAMESPACE)
            .ok()
            .map(|s| s.trim().to_string())
    })
    .or_else(|| std::env::var("POD_NAMESPACE").ok())
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "hookway-system".into())
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).context("--log-level")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster config or kubeconfig")?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level)?;
    let token_file = args.token_file.context("--token-file is required")?;
    let cert = args.tls_cert.context("--tls-cert is required")?;
    let key = args.tls_key.context("--tls-key is required")?;
    let root_namespace = root_namespace(args.root_namespace);
    let fetch = FetchConfig {
        timeout: Duration::from_secs(args.module_fetch_timeout.max(1)),
        max_bytes: args.module_max_bytes,
        ca_pem: match &args.module_ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        },
        ..FetchConfig::default()
    };
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("hookway-controller-{}", std::process::id()));
    let config = Config {
        namespaces: args
            .namespaces
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        compile: default_compile(&root_namespace),
        root_namespace,
        stream_listener: TcpListener::bind(args.stream_addr)
            .await
            .with_context(|| format!("binding {}", args.stream_addr))?,
        admin_listener: TcpListener::bind(args.admin_addr)
            .await
            .with_context(|| format!("binding {}", args.admin_addr))?,
        token: Token::from_file(&token_file)?,
        tls: tls::from_files(&cert, &key)?,
        identity,
        lease_duration: Duration::from_secs(args.lease_seconds.max(3)),
        debounce: Debounce::default(),
        gateway_api_recheck: hookway_controller::watch::GATEWAY_API_RECHECK,
        fetch,
        proxy_service: args.proxy_service.filter(|s| !s.is_empty()),
    };
    let controller = Controller::start(client(args.kubeconfig).await?, config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    controller.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crds { write: None }) => print!("{}", hookway_crds::crdgen::all_crds_yaml()),
        Some(Command::Crds { write: Some(dir) }) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in hookway_crds::crdgen::crd_files() {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => tokio::runtime::Runtime::new()?.block_on(run(cli.run))?,
    }
    Ok(())
}
