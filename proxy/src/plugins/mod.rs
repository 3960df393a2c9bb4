//! Built-in plugins: one file each, registered here with one line each.

use crate::plugin::Registry;

/// The registry of every built-in plugin kind.
pub fn builtin() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::new();
    // One line per plugin, alphabetical: registry.register::<mock::Mock>();
    registry
}
