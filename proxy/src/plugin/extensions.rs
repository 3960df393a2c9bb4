//! Typed per-request state for plugins ([`Ctx::extensions`](super::Ctx::extensions)): at
//! most one value per type.
//!
//! A request carries few of them (a plugin's remaining rate-limit budget, a compression
//! choice), so they live in a short inline list searched by type id: storing one costs one
//! allocation for the value, where `http::Extensions` also builds a hash table per request.

use std::any::{Any, TypeId};
use std::fmt;

use smallvec::SmallVec;

type Value = Box<dyn Any + Send + Sync>;

/// A type map for per-request plugin state.
#[derive(Default)]
pub struct Extensions {
    entries: SmallVec<[(TypeId, Value); 2]>,
}

impl Extensions {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    fn position<T: 'static>(&self) -> Option<usize> {
        let id = TypeId::of::<T>();
        self.entries.iter().position(|(t, _)| *t == id)
    }

    /// Stores `value`, returning the value of its type stored before, if any.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        match self.position::<T>() {
            Some(i) => {
                let old = std::mem::replace(&mut self.entries[i].1, Box::new(value));
                old.downcast().ok().map(|b| *b)
            }
            None => {
                self.entries.push((TypeId::of::<T>(), Box::new(value)));
                None
            }
        }
    }

    /// The value of type `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let i = self.position::<T>()?;
        self.entries[i].1.downcast_ref()
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let i = self.position::<T>()?;
        self.entries[i].1.downcast_mut()
    }

    /// The value of type `T`, stored as `T::default()` first when there is none.
    pub fn get_or_insert_default<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        let i = match self.position::<T>() {
            Some(i) => i,
            None => {
                self.entries
                    .push((TypeId::of::<T>(), Box::new(T::default())));
                self.entries.len() - 1
            }
        };
        self.entries[i]
            .1
            .downcast_mut()
            .expect("entries are stored under their own type id")
    }

    /// Takes the value of type `T` out.
    pub fn remove<T: 'static>(&mut self) -> Option<T> {
        let i = self.position::<T>()?;
        let (_, value) = self.entries.remove(i);
        value.downcast().ok().map(|b| *b)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Budget(u32);

    #[test]
    fn one_value_per_type() {
        let mut ext = Extensions::new();
        assert!(ext.is_empty());
        assert_eq!(ext.insert(Budget(1)), None);
        assert_eq!(ext.insert("text"), None);
        assert_eq!(ext.insert(7u64), None);
        assert_eq!(
            ext.insert(Budget(2)),
            Some(Budget(1)),
            "replaced, old one returned"
        );
        assert_eq!(ext.len(), 3);
        assert_eq!(ext.get::<Budget>(), Some(&Budget(2)));
        assert_eq!(ext.get::<&str>(), Some(&"text"));
        assert_eq!(ext.get::<u32>(), None);
        if let Some(n) = ext.get_mut::<u64>() {
            *n += 1;
        }
        assert_eq!(ext.remove::<u64>(), Some(8));
        assert_eq!(ext.remove::<u64>(), None);
        assert_eq!(ext.len(), 2);
    }

    #[test]
    fn get_or_insert_default_inserts_once() {
        let mut ext = Extensions::new();
        ext.get_or_insert_default::<Budget>().0 += 5;
        ext.get_or_insert_default::<Budget>().0 += 1;
        assert_eq!(ext.get::<Budget>(), Some(&Budget(6)));
        assert_eq!(ext.len(), 1);
    }
}
