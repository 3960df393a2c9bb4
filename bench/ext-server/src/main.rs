//! `hookway-bench-ext EXT_PROC_ADDR EXT_AUTHZ_ADDR`: the cheapest servers the Envoy
//! plugins can talk to, for `bench/proxy.sh` (targets `hookway-extproc`, `hookway-extauthz`).
//! The ext_proc server answers every message with CONTINUE and no mutation; the ext_authz
//! server allows every request. One thread (the bench pins it beside wrk and the upstream),
//! HTTP/2 without TLS, as gRPC servers usually run inside a cluster.

mod ext_authz;
mod ext_proc;

use std::net::SocketAddr;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use tonic::transport::Server;

fn main() {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or_else(|e| fail(&format!("{a}: {e}"))))
        .collect();
    let [ext_proc, ext_authz] = addrs[..] else {
        fail("usage: hookway-bench-ext EXT_PROC_ADDR EXT_AUTHZ_ADDR");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("starting the runtime: {e}")));
    runtime.block_on(async move {
        let proc =
            Server::builder().serve(ext_proc, ExternalProcessorServer::new(ext_proc::Continue));
        let authz = Server::builder().serve(ext_authz, AuthorizationServer::new(ext_authz::Allow));
        if let Err(e) = tokio::try_join!(proc, authz) {
            fail(&format!("serving: {e}"));
        }
    });
}

fn fail(message: &str) -> ! {
    eprintln!("hookway-bench-ext: {message}");
    std::process::exit(2)
}
