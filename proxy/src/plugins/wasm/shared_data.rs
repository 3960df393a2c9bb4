//! Shared data (`proxy_get_shared_data` / `proxy_set_shared_data`): one key-value table for
//! every Wasm filter instance of this proxy process, with compare-and-swap versions. Bounded:
//! at most [`MAX_KEYS`] keys of [`MAX_KEY_BYTES`] and values of [`MAX_VALUE_BYTES`]; when full,
//! new keys are refused (`InternalFailure`). Its size is exported as the bounded table
//! `wasm_shared_data` (`hookway_table_entries{plugin="wasm",table="wasm_shared_data"}`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::abi::status;
use crate::metrics::tables::{LimitUnit, TableStats};

/// Most keys in the table.
pub const MAX_KEYS: usize = 4096;
/// Longest key, bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value, bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

type Table = HashMap<Vec<u8>, (Vec<u8>, u32)>;

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn stats() -> &'static TableStats {
    static STATS: OnceLock<std::sync::Arc<TableStats>> = OnceLock::new();
    STATS.get_or_init(|| {
        TableStats::register(
            "wasm".into(),
            "wasm_shared_data",
            LimitUnit::Entries,
            MAX_KEYS as u64,
        )
    })
}

/// The value of `key` and its CAS version.
pub fn get(key: &[u8]) -> Option<(Vec<u8>, u32)> {
    let table = table().lock().unwrap_or_else(|e| e.into_inner());
    table.get(key).cloned()
}

/// Sets `key`; `cas` 0 sets unconditionally, otherwise it must be the current version. Returns
/// an ABI status.
pub fn set(key: &[u8], value: &[u8], cas: u32) -> i32 {
    if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
        return status::BAD_ARGUMENT;
    }
    let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
    let len = table.len();
    match table.get_mut(key) {
        Some((stored, version)) => {
            if cas != 0 && cas != *version {
                return status::CAS_MISMATCH;
            }
            stored.clear();
            stored.extend_from_slice(value);
            *version = version.wrapping_add(1).max(1);
        }
        None => {
            if cas != 0 {
                return status::CAS_MISMATCH;
            }
            if len >= MAX_KEYS {
                return status::INTERNAL_FAILURE;
            }
            table.insert(key.to_vec(), (value.to_vec(), 1));
            stats().added((key.len() + value.len()) as u64);
        }
    }
    status::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap() {
        let key = b"wasm-shared-data-test-cas";
        assert_eq!(get(key), None);
        assert_eq!(set(key, b"a", 7), status::CAS_MISMATCH);
        let entries = stats().entries();
        assert_eq!(set(key, b"a", 0), status::OK);
        assert!(stats().entries() > entries, "a new key is counted");
        assert_eq!(stats().limit(), MAX_KEYS as u64);
        let (value, cas) = get(key).unwrap();
        assert_eq!(value, b"a");
        assert_eq!(set(key, b"b", cas + 1), status::CAS_MISMATCH);
        assert_eq!(set(key, b"b", cas), status::OK);
        assert_eq!(get(key).unwrap().0, b"b");
        assert_eq!(
            set(key, &vec![0; MAX_VALUE_BYTES + 1], 0),
            status::BAD_ARGUMENT
        );
    }
}
