//! A real proxy (the data plane, in-process, plain HTTP) fed by a controller's snapshot stream.

use std::net::SocketAddr;
use std::time::Duration;

use hookway_proxy::chain::ChainBuilder;
use hookway_proxy::source::controller::{self as source, Backoff, ControllerSourceConfig};
use hookway_proxy::{ProxyConfig, ProxyServer};
use tokio::sync::{oneshot, watch};

use crate::pki::Pki;

/// A proxy serving on [`RunningProxy::http`]; it stops when dropped.
pub struct RunningProxy {
    /// The plain-HTTP listener.
    pub http: SocketAddr,
    /// Its runtime (what it serves, its metrics).
    pub state: std::sync::Arc<hookway_proxy::runtime::RuntimeState>,
    stop: Option<oneshot::Sender<()>>,
    source: tokio::task::AbortHandle,
}

impl Drop for RunningProxy {
    /// Stops serving and closes the snapshot stream at once, as a proxy's pod going away does.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.source.abort();
    }
}

/// Starts a proxy with the built-in plugins on ephemeral ports, streaming from the controller at
/// `controller` as proxy `id` (token and CA from `pki`; reconnect backoff 50–300 ms).
pub async fn start(pki: &Pki, controller: SocketAddr, id: &str) -> RunningProxy {
    start_with(pki, controller, id, hookway_proxy::plugins::builtin()).await
}

/// [`start`] with the plugin kinds of `registry`.
pub async fn start_with(
    pki: &Pki,
    controller: SocketAddr,
    id: &str,
    registry: hookway_proxy::plugin::Registry,
) -> RunningProxy {
    let (tx, rx) = watch::channel(None);
    let config = ProxyConfig {
        http_addr: Some("127.0.0.1:0".parse().expect("address")),
        https_addr: None,
        admin_addr: Some("127.0.0.1:0".parse().expect("address")),
        ..ProxyConfig::default()
    };
    let server = ProxyServer::bind(config, ChainBuilder::new(registry), rx)
        .await
        .expect("proxy binds");
    let http = server.http_addr().expect("http listener");
    let verdicts = server.state().verdicts();
    let state = server.state().clone();
    let mut source_config = ControllerSourceConfig::new(
        format!("https://127.0.0.1:{}", controller.port()),
        pki.ca_file.clone(),
        pki.token_file.clone(),
        id,
    );
    source_config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
    };
    let source = tokio::spawn(async move {
        let _ = source::run(source_config, tx, Some(verdicts)).await;
    })
    .abort_handle();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    RunningProxy {
        http,
        state,
        stop: Some(stop),
        source,
    }
}

/// Waits (bounded) until `attempts` connections reach `addr`, the stream address of a controller
/// that has stopped: a proxy dials again only once it has seen its stream end, so this is the
/// moment to check what the proxies kept. Each connection is closed at once, so they go on
/// retrying; the address is free again when this returns.
pub async fn wait_redials(addr: SocketAddr, attempts: usize) {
    let stand_in = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the stopped controller's address");
    for _ in 0..attempts {
        tokio::time::timeout(Duration::from_secs(10), stand_in.accept())
            .await
            .expect("no proxy dialled the stopped controller again")
            .expect("accept");
    }
}

/// The status a proxy at `proxy` answers for `GET /` with `Host: host`, on a fresh connection
/// (0 when the connection or the request failed).
pub async fn status(proxy: SocketAddr, host: &str) -> u16 {
    use http_body_util::{BodyExt, Empty};
    let Ok(stream) = tokio::net::TcpStream::connect(proxy).await else {
        return 0;
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(io).await else {
        return 0;
    };
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header(http::header::HOST, host)
        .body(Empty::<bytes::Bytes>::new())
        .expect("a GET request");
    match send.send_request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}
