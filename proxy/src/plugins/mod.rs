//! Built-in plugins: one file each, registered here with one line each.

mod header_config;
pub mod headers;
pub mod mock;
pub mod request_id;
#[cfg(test)]
pub(crate) mod testing;

use crate::plugin::Registry;

/// The registry of every built-in plugin kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    // One line per plugin, alphabetical.
    registry.register::<headers::Headers>();
    registry.register::<mock::Mock>();
    registry.register::<request_id::RequestId>();
    registry
}
