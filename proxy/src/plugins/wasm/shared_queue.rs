//! Shared queues (`proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`): named message queues within
//! one proxy process, one name space per Kubernetes namespace of the GatewayPlugin (a filter
//! never sees another namespace's queues). The filter config that registered a queue last owns
//! it: every enqueue wakes that config's root context (`proxy_on_queue_ready`, see `root.rs`).
//! Bounded: at most [`MAX_QUEUES`] queues, each holding at most its `max_queue_length`
//! messages of at most [`MAX_MESSAGE_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::abi::status;

/// Most queues in the process.
pub const MAX_QUEUES: usize = 1024;
/// Longest message, bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Where enqueues of a queue are announced: the owning config's root context.
pub type Owner = mpsc::Sender<u32>;

struct Queue {
    namespace: Arc<str>,
    messages: VecDeque<Vec<u8>>,
    max: usize,
    owner: Option<Owner>,
}

#[derive(Default)]
struct Registry {
    ids: HashMap<(Arc<str>, Vec<u8>), u32>,
    queues: HashMap<u32, Queue>,
    next: u32,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// Registers queue `name` of `namespace` (or takes it over: same id) with room for `max`
/// messages, announcing enqueues to `owner` (a new owner is woken at once when messages wait);
/// returns its id, or `InternalFailure` when [`MAX_QUEUES`] exist.
pub fn register(
    namespace: &Arc<str>,
    name: &[u8],
    max: usize,
    owner: Option<Owner>,
) -> Result<u32, i32> {
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let key = (namespace.clone(), name.to_vec());
    if let Some(&id) = registry.ids.get(&key) {
        if let Some(queue) = registry.queues.get_mut(&id) {
            queue.max = max;
            if let Some(owner) = owner {
                // Messages enqueued before this owner came are announced to it now.
                if !queue.messages.is_empty() {
                    let _ = owner.try_send(id);
                }
                queue.owner = Some(owner);
            }
        }
        return Ok(id);
    }
    if registry.queues.len() >= MAX_QUEUES {
        return Err(status::INTERNAL_FAILURE);
    }
    registry.next = registry.next.wrapping_add(1).max(1);
    let id = registry.next;
    registry.ids.insert(key, id);
    registry.queues.insert(
        id,
        Queue {
            namespace: namespace.clone(),
            messages: VecDeque::new(),
            max,
            owner,
        },
    );
    Ok(id)
}

/// The id of queue `name` of `namespace`.
pub fn resolve(namespace: &Arc<str>, name: &[u8]) -> Option<u32> {
    let registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    registry
        .ids
        .get(&(namespace.clone(), name.to_vec()))
        .copied()
}

/// Appends `message` to queue `id` and wakes its owner; returns an ABI status (`NotFound`:
/// no such queue in `namespace`; `InternalFailure`: full; `BadArgument`: too long).
pub fn enqueue(namespace: &str, id: u32, message: &[u8]) -> i32 {
    if message.len() > MAX_MESSAGE_BYTES {
        return status::BAD_ARGUMENT;
    }
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let Some(queue) = registry
        .queues
        .get_mut(&id)
        .filter(|q| &*q.namespace == namespace)
    else {
        return status::NOT_FOUND;
    };
    if queue.messages.len() >= queue.max {
        return status::INTERNAL_FAILURE;
    }
    queue.messages.push_back(message.to_vec());
    if let Some(owner) = &queue.owner {
        // A full channel already holds wake-ups: the root context drains the queue anyway.
        let _ = owner.try_send(id);
    }
    status::OK
}

/// The oldest message of queue `id`: `Err(Empty)` when none, `Err(NotFound)` when no such
/// queue in `namespace`.
pub fn dequeue(namespace: &str, id: u32) -> Result<Vec<u8>, i32> {
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let Some(queue) = registry
        .queues
        .get_mut(&id)
        .filter(|q| &*q.namespace == namespace)
    else {
        return Err(status::NOT_FOUND);
    };
    queue.messages.pop_front().ok_or(status::EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queues_are_bounded_namespaced_and_wake_their_owner() {
        let ns: Arc<str> = "queue-test-a".into();
        let other: Arc<str> = "queue-test-b".into();
        let (tx, mut rx) = mpsc::channel(8);
        let id = register(&ns, b"jobs", 2, None).unwrap();
        assert_eq!(enqueue(&ns, id, b"early"), status::OK, "no owner yet");
        assert_eq!(register(&ns, b"jobs", 2, Some(tx)), Ok(id));
        assert_eq!(
            rx.recv().await,
            Some(id),
            "the new owner hears of the waiting message"
        );
        assert_eq!(dequeue(&ns, id).unwrap(), b"early");
        assert_eq!(
            register(&ns, b"jobs", 2, None),
            Ok(id),
            "same name, same id"
        );
        assert_eq!(resolve(&ns, b"jobs"), Some(id));
        assert_eq!(
            resolve(&other, b"jobs"),
            None,
            "another namespace's name space"
        );
        assert_eq!(enqueue(&other, id, b"x"), status::NOT_FOUND);
        assert_eq!(dequeue(&other, id), Err(status::NOT_FOUND));
        assert_eq!(dequeue(&ns, id), Err(status::EMPTY));
        assert_eq!(enqueue(&ns, id, b"one"), status::OK);
        assert_eq!(rx.recv().await, Some(id), "the owner is woken");
        assert_eq!(enqueue(&ns, id, b"two"), status::OK);
        assert_eq!(enqueue(&ns, id, b"three"), status::INTERNAL_FAILURE, "full");
        assert_eq!(
            enqueue(&ns, id, &vec![0; MAX_MESSAGE_BYTES + 1]),
            status::BAD_ARGUMENT
        );
        assert_eq!(dequeue(&ns, id).unwrap(), b"one");
        assert_eq!(dequeue(&ns, id).unwrap(), b"two");
        assert_eq!(enqueue(&ns, 0, b"x"), status::NOT_FOUND);
    }
}
