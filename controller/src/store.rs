//! A reflector store of our own: objects by a 128-bit keyed digest of their namespace and name.
//!
//! Why not kube-runtime's `reflector::Store`: it keys each object by an `ObjectRef`, a second
//! copy of the object's name, namespace, `resourceVersion` and `uid` (96 bytes inline plus four
//! strings): 1.17 MiB for 10,000 Routes, about 1.5 MiB over the stores at issue 18's size
//! (`controller/tests/heap.rs`), for a key the object already carries. Here a key is 16 bytes
//! (collisions out of reach: the digest's keys are random per store), and the writer takes
//! each object by value (kube's writer clones every object it stores). kube-runtime still
//! does the watching (`watcher`, backoff, relists): `watch.rs` feeds its events to [`Writer`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher::Event;
use kube::Resource;
use tokio::sync::watch;

/// Objects by key.
type Map<K> = HashMap<u128, Arc<K>>;

struct Shared<K> {
    objects: RwLock<Map<K>>,
    keys: (RandomState, RandomState),
}

impl<K> Shared<K> {
    fn key(&self, namespace: Option<&str>, name: &str) -> u128 {
        let (a, b) = &self.keys;
        (u128::from(a.hash_one((namespace, name))) << 64)
            | u128::from(b.hash_one((namespace, name)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map<K>> {
        // A panic while holding the lock cannot leave a map of `Arc`s half-written.
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map<K>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reading side of a reflector store. Cheap to clone (shared).
pub struct Store<K> {
    shared: Arc<Shared<K>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            ready: self.ready.clone(),
        }
    }
}

/// The writer went away before the store's first list was complete.
#[derive(Debug, thiserror::Error)]
#[error("the store's writer went away before its first list")]
pub struct WriterDropped;

impl<K: Resource> Store<K> {
    /// Every object.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.shared.read().values().cloned().collect()
    }

    /// The object `name` in `namespace` (`None`: cluster-scoped).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let key = self.shared.key(namespace, name);
        self.shared.read().get(&key).cloned()
    }

    /// The stored copy of `obj` (same namespace and name), if any.
    pub fn get_like(&self, obj: &K) -> Option<Arc<K>> {
        let meta = obj.meta();
        self.get(meta.namespace.as_deref(), meta.name.as_deref()?)
    }

    /// Waits until the first list is complete.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }
}

/// The writing side: applies the watcher's events.
pub struct Writer<K> {
    shared: Arc<Shared<K>>,
    /// A relist in progress: the objects listed so far (the store keeps serving the old ones).
    buffer: Option<Map<K>>,
    ready: watch::Sender<bool>,
}

/// A new store and its writer.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let shared = Arc::new(Shared {
        objects: RwLock::new(HashMap::new()),
        keys: (RandomState::new(), RandomState::new()),
    });
    let (ready_tx, ready_rx) = watch::channel(false);
    (
        Store {
            shared: shared.clone(),
            ready: ready_rx,
        },
        Writer {
            shared,
            buffer: None,
            ready: ready_tx,
        },
    )
}

impl<K: Resource> Writer<K> {
    fn key_of(&self, obj: &K) -> Option<u128> {
        let meta = obj.meta();
        Some(
            self.shared
                .key(meta.namespace.as_deref(), meta.name.as_deref()?),
        )
    }

    /// The stored copy of `obj` (same namespace and name), if any.
    pub fn get_like(&self, obj: &K) -> Option<Arc<K>> {
        let key = self.key_of(obj)?;
        self.shared.read().get(&key).cloned()
    }

    /// Applies one event, as kube-runtime's writer does: a relist (`Init`, `InitApply`...,
    /// `InitDone`) replaces the store's objects at its end; until then the store serves the
    /// previous ones.
    pub fn apply(&mut self, event: Event<K>) {
        match event {
            Event::Init => self.buffer = Some(Map::new()),
            Event::InitApply(obj) => {
                if let Some(key) = self.key_of(&obj) {
                    self.buffer
                        .get_or_insert_with(Map::new)
                        .insert(key, Arc::new(obj));
                }
            }
            Event::InitDone => {
                let mut listed = self.buffer.take().unwrap_or_default();
                listed.shrink_to_fit();
                *self.shared.write() = listed;
                self.ready.send_replace(true);
            }
            Event::Apply(obj) => {
                if let Some(key) = self.key_of(&obj) {
                    self.shared.write().insert(key, Arc::new(obj));
                }
            }
            Event::Delete(obj) => {
                if let Some(key) = self.key_of(&obj) {
                    self.shared.write().remove(&key);
                }
            }
        }
    }

    /// [`Writer::apply`] for an event borrowed (tests; the watch gives its events away).
    pub fn apply_watcher_event(&mut self, event: &Event<K>)
    where
        K: Clone,
    {
        self.apply(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    fn cm(ns: &str, name: &str, v: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.data = Some([("v".to_string(), v.to_string())].into());
        c
    }

    fn value(s: &Store<ConfigMap>, ns: &str, name: &str) -> Option<String> {
        s.get(Some(ns), name)
            .and_then(|c| c.data.as_ref()?.get("v").cloned())
    }

    #[tokio::test]
    async fn applies_lists_changes_and_deletes_like_kubes_writer() {
        let (store, mut writer) = store::<ConfigMap>();
        assert!(store.state().is_empty());
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(cm("a", "x", "1")));
        writer.apply(Event::InitApply(cm("b", "x", "2")));
        assert!(store.state().is_empty(), "a list shows at its end");
        writer.apply(Event::InitDone);
        store.wait_until_ready().await.unwrap();
        assert_eq!(value(&store, "a", "x").as_deref(), Some("1"));
        assert_eq!(
            value(&store, "b", "x").as_deref(),
            Some("2"),
            "namespaces apart"
        );
        assert_eq!(value(&store, "c", "x"), None);

        writer.apply(Event::Apply(cm("a", "x", "3")));
        writer.apply(Event::Apply(cm("a", "y", "4")));
        writer.apply(Event::Delete(cm("b", "x", "")));
        assert_eq!(value(&store, "a", "x").as_deref(), Some("3"));
        assert_eq!(store.state().len(), 2);
        assert!(writer.get_like(&cm("a", "y", "")).is_some());

        // A relist: the old objects serve until it ends, then only the listed ones remain.
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(cm("a", "y", "5")));
        assert_eq!(store.state().len(), 2);
        writer.apply(Event::InitDone);
        assert_eq!(store.state().len(), 1);
        assert_eq!(value(&store, "a", "y").as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn cluster_scoped_objects_and_a_writer_gone_before_its_list() {
        let (store, mut writer) = store::<Namespace>();
        let mut ns = Namespace::default();
        ns.metadata.name = Some("a".into());
        writer.apply(Event::Apply(ns));
        assert!(store.get(None, "a").is_some());
        assert!(store.get(Some("a"), "a").is_none());
        drop(writer);
        assert!(store.wait_until_ready().await.is_err());
        let (store, mut writer) = super::store::<Namespace>();
        writer.apply(Event::InitDone);
        drop(writer);
        assert!(store.wait_until_ready().await.is_ok(), "ready, then gone");
    }
}
