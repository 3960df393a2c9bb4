//! The proxy registry across replicas: the Kubernetes I/O (the merge is pure, in `fleet.rs`).
//!
//! Like the API server's identity leases, each replica owns one `coordination.k8s.io/v1`
//! Lease in the controller's namespace, named [`lease_name`]`(<lease-name>, <identity>)` and
//! labelled `hookway.dev/proxy-registry: "true"`, whose annotation `hookway.dev/proxies` lists
//! the proxies connected to that replica.
//!
//! ```text
//!  proxies.rs ──changed──► publish(): 200 ms after a change, at least every renew period:
//!                          server-side apply (field manager hookway-controller); delete on shutdown
//!  API server ──watch (label selector)──► watch_leases() ──watch<Leases>──► status_loop.rs
//!                                         (also wakes it when a Lease expires)
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hookway_crds::FIELD_MANAGER;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::fleet::{self, Table, PROXIES_ANNOTATION, REGISTRY_LABEL};
use crate::leader::LeaseConfig;
use crate::proxies::Proxies;

/// The registry Leases seen (every replica's, this one's included).
pub type Leases = Arc<Vec<Lease>>;

/// Registry settings.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// This replica's registry Lease name (see [`lease_name`]).
    pub name: String,
    /// The controller's namespace.
    pub namespace: String,
    /// This replica's identity (`spec.holderIdentity`).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// Rewrite at least this often.
    pub renew_every: Duration,
    /// Wait this long after a change of the local table before writing (bursts coalesce).
    pub coalesce: Duration,
}

impl RegistryConfig {
    /// The registry settings that go with the leader election's: same namespace, identity,
    /// duration and renew period.
    pub fn for_lease(lease: &LeaseConfig) -> Self {
        Self {
            name: lease_name(&lease.name, &lease.identity),
            namespace: lease.namespace.clone(),
            identity: lease.identity.clone(),
            duration: lease.duration,
            renew_every: lease.renew_every,
            coalesce: Duration::from_millis(200),
        }
    }
}

/// `<base>-proxies-<identity>` as a DNS-1123 subdomain (≤ 253 characters). When the identity
/// had to be changed (upper case, other characters, too long) a hash of the original is
/// appended, so that two identities never share a Lease.
pub fn lease_name(base: &str, identity: &str) -> String {
    const MAX: usize = 253;
    let raw = format!("{base}-proxies-{identity}");
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = name == raw
        && name.len() <= MAX
        && alnum(name.chars().next())
        && alnum(name.chars().last());
    if !valid {
        let suffix = format!("-{:016x}", fnv1a(raw.as_bytes()));
        name.truncate(MAX - suffix.len());
        let trimmed = name.trim_matches('-');
        name = if trimmed.is_empty() {
            format!("proxies{suffix}")
        } else {
            format!("{trimmed}{suffix}")
        };
    }
    name
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The Lease this replica applies for `table`, renewed `now`.
pub fn lease(config: &RegistryConfig, table: &Table, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some([(REGISTRY_LABEL.to_string(), "true".to_string())].into()),
            annotations: Some([(PROXIES_ANNOTATION.to_string(), fleet::encode(table))].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.duration.as_secs().max(1) as i32),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Publishes this replica's proxies until `shutdown` fires, then deletes its Lease.
pub async fn publish(
    client: Client,
    config: RegistryConfig,
    proxies: Proxies,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut changes = proxies.subscribe();
    let mut written: Option<Table> = None;
    let mut next_write = Instant::now();
    let retry = config.renew_every.min(Duration::from_secs(1));
    loop {
        let table = proxies.table();
        if written.as_ref() != Some(&table) || Instant::now() >= next_write {
            match apply(&api, &config, &table).await {
                Ok(()) => {
                    debug!(replica = %config.identity, lease = %config.name, proxies = table.len(), "registry lease written");
                    written = Some(table);
                    next_write = Instant::now() + config.renew_every;
                }
                Err(e) => {
                    warn!(replica = %config.identity, lease = %config.name, error = %e, "could not write the registry lease");
                    written = None;
                    next_write = Instant::now() + retry;
                }
            }
        }
        let changed = tokio::select! {
            _ = tokio::time::sleep_until(next_write) => false,
            r = changes.changed() => match r {
                Ok(()) => true,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        if changed {
            // Let a burst of connects and acks settle.
            tokio::select! {
                _ = tokio::time::sleep(config.coalesce) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            changes.borrow_and_update();
        }
    }
    match api.delete(&config.name, &DeleteParams::default()).await {
        Ok(_) => info!(replica = %config.identity, lease = %config.name, "registry lease deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            warn!(replica = %config.identity, lease = %config.name, error = %e, "could not delete the registry lease")
        }
    }
}

async fn apply(api: &Api<Lease>, config: &RegistryConfig, table: &Table) -> crate::Result<()> {
    let body = lease(config, table, Timestamp::now());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&config.name, &params, &Patch::Apply(&body))
        .await?;
    Ok(())
}

/// Watches the registry Leases of `namespace` (label `hookway.dev/proxy-registry=true`) and
/// sends the current set on every change, and again when one of them expires. Runs until
/// `tx` has no receiver left.
pub async fn watch_leases(client: Client, namespace: String, tx: watch::Sender<Leases>) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{REGISTRY_LABEL}=true"));
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    futures::pin_mut!(stream);
    let mut next_expiry: Option<Instant> = None;
    loop {
        let expiry = async {
            match next_expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(%namespace, error = %e, "registry lease watch failed; retrying");
                    continue;
                }
                None => return,
            },
            _ = expiry => debug!(%namespace, "a registry lease expired"),
            _ = tx.closed() => return,
        }
        let leases: Vec<Lease> = reader.state().iter().map(|l| Lease::clone(l)).collect();
        next_expiry = next_expiry_after(&leases, Timestamp::now());
        tx.send_replace(Arc::new(leases));
    }
}

/// When the first of these Leases that is still live expires (a little after, so that the
/// merge then sees it expired).
fn next_expiry_after(leases: &[Lease], now: Timestamp) -> Option<Instant> {
    leases
        .iter()
        .filter_map(fleet::expires_at)
        .filter(|at| *at > now)
        .min()
        .map(|at| {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            Instant::now() + wait + Duration::from_millis(10)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns1123_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn lease_names_are_dns_subdomains_and_distinct() {
        let long = "x".repeat(300);
        let cases = [
            (
                "controller-0",
                Some("hookway-controller-proxies-controller-0"),
            ),
            ("Controller-0", None),
            ("controller_0", None),
            ("controller.0", None),
            ("controller-", None),
            ("ctrl/ü", None),
            (long.as_str(), None),
            ("", None),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (identity, exact) in cases {
            let name = lease_name("hookway-controller", identity);
            assert!(dns1123_subdomain(&name), "{identity:?} -> {name:?}");
            if let Some(exact) = exact {
                assert_eq!(name, exact);
            }
            assert!(seen.insert(name.clone()), "{identity:?} collides: {name}");
        }
        assert_ne!(
            lease_name("hookway-controller", "controller_0"),
            lease_name("hookway-controller", "controller.0"),
        );
    }

    #[test]
    fn the_lease_carries_label_holder_duration_and_annotation() {
        let config = RegistryConfig {
            name: "hookway-controller-proxies-c0".into(),
            namespace: "hookway-system".into(),
            identity: "c0".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            coalesce: Duration::from_millis(200),
        };
        let table: Table = [("p0".to_string(), fleet::Applied::default())].into();
        let now = Timestamp::from_second(1000).unwrap();
        let l = lease(&config, &table, now);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["apiVersion"], "coordination.k8s.io/v1");
        assert_eq!(json["kind"], "Lease");
        assert_eq!(json["metadata"]["labels"][REGISTRY_LABEL], "true");
        assert_eq!(
            json["metadata"]["annotations"][PROXIES_ANNOTATION],
            r#"{"p0":{"applied":null}}"#
        );
        assert_eq!(json["spec"]["holderIdentity"], "c0");
        assert_eq!(json["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(
            fleet::expires_at(&l),
            Some(now + k8s_openapi::jiff::SignedDuration::from_secs(15))
        );
    }
}
