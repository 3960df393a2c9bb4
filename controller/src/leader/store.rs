//! Where the Lease lives: the API server in production ([`Api<Lease>`]), memory in tests. Writes
//! carry the read `resourceVersion`, so of two replicas racing, one gets a conflict.

use std::future::Future;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::Api;

/// The outcome of a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The write was applied.
    Done,
    /// Someone wrote first (409): the write was not applied.
    Conflict,
}

/// A Lease store.
pub trait LeaseStore: Send + Sync {
    /// The Lease, if it exists.
    fn get(&self, name: &str) -> impl Future<Output = kube::Result<Option<Lease>>> + Send;
    /// Creates the Lease.
    fn create(&self, lease: &Lease) -> impl Future<Output = kube::Result<Written>> + Send;
    /// Replaces the Lease if its `resourceVersion` is still the stored one.
    fn replace(
        &self,
        name: &str,
        lease: &Lease,
    ) -> impl Future<Output = kube::Result<Written>> + Send;
}

fn conflict_is_not_an_error<T>(r: kube::Result<T>) -> kube::Result<Written> {
    match r {
        Ok(_) => Ok(Written::Done),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Written::Conflict),
        Err(e) => Err(e),
    }
}

impl LeaseStore for Api<Lease> {
    async fn get(&self, name: &str) -> kube::Result<Option<Lease>> {
        self.get_opt(name).await
    }

    async fn create(&self, lease: &Lease) -> kube::Result<Written> {
        conflict_is_not_an_error(Api::create(self, &PostParams::default(), lease).await)
    }

    async fn replace(&self, name: &str, lease: &Lease) -> kube::Result<Written> {
        conflict_is_not_an_error(Api::replace(self, name, &PostParams::default(), lease).await)
    }
}
