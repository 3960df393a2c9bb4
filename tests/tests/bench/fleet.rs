//! A fleet of proxies restarting at once (issue 18: "a fleet of 10 proxies restarting at once
//! does not delay a Route change by more than 1 s").
//!
//! Each round stops the previous fleet (its streams close, as when its pods go away), starts a
//! new one in the same instant (each proxy dials the controller as soon as it starts, and is
//! sent the whole snapshot) and makes one Route change right then, timed until the controller
//! publishes it, until the proxies that stay serve it (the delay a fleet restart causes to a
//! change) and until every proxy of the new fleet serves it too (their first whole snapshot
//! included).
//!
//! With `HOOKWAY_BENCH_PROXY_BIN` (bench/controller.sh sets it) the fleet's proxies are real
//! `hookway-proxy` processes run at `nice 19`: on a cluster each runs on its own node, so its
//! CPU (decoding a 3 MB snapshot and building its runtime) is not the controller's; on this
//! rig's two shared cores, the lowest priority is what stands for that. Without it they run in
//! this process, competing with the controller and the two steady proxies for the same cores
//! (a harsher case, reported as such).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookway_controller::metrics::Metrics;
use hookway_crds::{Route, Snapshot};
use hookway_tests::{pki::Pki, proxy};
use kube::api::PostParams;
use kube::Api;

/// Proxies in the fleet.
pub const FLEET: usize = 10;
/// How many times it restarts.
pub const FLEET_ROUNDS: usize = 5;

/// The restarts to run, and what they need of the benchmark.
pub struct Restarts<'a> {
    /// The stream's TLS and token.
    pub pki: &'a Pki,
    /// The controller's stream address.
    pub stream_addr: SocketAddr,
    /// The controller's metrics (its count of open streams).
    pub metrics: &'a Metrics,
    /// Where Routes are changed.
    pub routes: &'a Api<Route>,
    /// The proxies that stay.
    pub steady: &'a [SocketAddr],
    /// Route `r{(first_change + round) * every}` is the one changed in `round`.
    pub first_change: usize,
    /// See `first_change`.
    pub every: usize,
}

/// What the rounds measured, each sorted.
pub struct Timed {
    /// How the fleet ran (processes at `nice 19`, or in this process).
    pub how: &'static str,
    /// Change → published by the controller.
    pub published: Vec<Duration>,
    /// Change → served by the steady proxies.
    pub steady: Vec<Duration>,
    /// Change → served by the whole new fleet as well.
    pub fleet: Vec<Duration>,
}

/// One running member of the fleet.
enum Member {
    InProcess(proxy::RunningProxy),
    /// A `hookway-proxy` process, killed when dropped (`kill_on_drop`).
    Process {
        _child: tokio::process::Child,
        http: SocketAddr,
    },
}

impl Member {
    fn http(&self) -> SocketAddr {
        match self {
            Self::InProcess(p) => p.http,
            Self::Process { http, .. } => *http,
        }
    }
}

impl Restarts<'_> {
    /// Runs [`FLEET_ROUNDS`] restarts; when it returns, no fleet is running and the controller
    /// counts only the steady proxies' streams.
    pub async fn run(
        &self,
        compiled: &mut tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>,
    ) -> Timed {
        let bin = std::env::var_os("HOOKWAY_BENCH_PROXY_BIN");
        let mut timed = Timed {
            how: if bin.is_some() {
                "hookway-proxy processes at nice 19"
            } else {
                "in this process, sharing its cores"
            },
            published: Vec::new(),
            steady: Vec::new(),
            fleet: Vec::new(),
        };
        let mut fleet: Vec<Member> = Vec::new();
        for round in 1..=FLEET_ROUNDS {
            let i = (self.first_change + round) * self.every;
            let host = format!("h{i}-f{round}.example.com");
            let mut r = self.routes.get(&format!("r{i}")).await.unwrap();
            r.spec.hosts = vec![host.clone()];
            drop(std::mem::take(&mut fleet));
            fleet = futures::future::join_all((0..FLEET).map(|n| {
                let id = format!("fleet{round}-{n}");
                let bin = bin.clone();
                async move {
                    match bin {
                        Some(bin) => self.spawn(&bin, &id),
                        None => {
                            Member::InProcess(proxy::start(self.pki, self.stream_addr, &id).await)
                        }
                    }
                }
            }))
            .await;
            let t = Instant::now();
            self.routes
                .replace(&format!("r{i}"), &PostParams::default(), &r)
                .await
                .unwrap();
            super::until_published(compiled, &host).await;
            timed.published.push(t.elapsed());
            super::until_served(self.steady, &host, Duration::from_secs(30)).await;
            timed.steady.push(t.elapsed());
            let addrs: Vec<SocketAddr> = fleet.iter().map(Member::http).collect();
            super::until_served(&addrs, &host, Duration::from_secs(60)).await;
            timed.fleet.push(t.elapsed());
        }
        drop(fleet);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metrics.connected_proxies.get() != self.steady.len() as i64 {
            assert!(
                Instant::now() < deadline,
                "the stopped fleet's streams still open: {} connected",
                self.metrics.connected_proxies.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        timed.published.sort();
        timed.steady.sort();
        timed.fleet.sort();
        timed
    }

    /// Starts `bin` at `nice 19` as proxy `id`, plain HTTP on a free loopback port.
    fn spawn(&self, bin: &std::ffi::OsStr, id: &str) -> Member {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let (http, admin) = (free(), free());
        let child = tokio::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(bin)
            .arg("--controller")
            .arg(format!("https://127.0.0.1:{}", self.stream_addr.port()))
            .arg("--controller-ca")
            .arg(&self.pki.ca_file)
            .arg("--controller-token-file")
            .arg(&self.pki.token_file)
            .args(["--no-https", "--log-level", "warn", "--worker-threads", "1"])
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .env("POD_NAME", id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start hookway-proxy");
        Member::Process {
            _child: child,
            http,
        }
    }
}
