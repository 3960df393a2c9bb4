//! Isolation of plugin failures: every call into a plugin goes through here, so an error or a
//! panic ends only the request it happened in, with a log line naming the plugin and route.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use futures::FutureExt;
use http::{Response, StatusCode};

use super::{ChainObserver, HookPhase, Link};
use crate::plugin::{respond, BoxFuture, Hook, PluginError, ProxyBody};
use hookway_crds::snapshot::ObjectKey;

/// How a plugin call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The plugin returned an error.
    Error(PluginError),
    /// The plugin panicked (the payload's message, when it had one).
    Panic(String),
}

impl Failure {
    /// The status the client gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::Error(e) => e.status,
            Failure::Panic(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "{}", e.message),
            Failure::Panic(msg) => write!(f, "panicked: {msg}"),
        }
    }
}

/// Runs a hook (the call itself and, for async hooks, its future) catching panics.
pub(crate) async fn hook<'a, T>(
    call: impl FnOnce() -> Hook<'a, Result<T, PluginError>>,
) -> Result<T, Failure> {
    let hook = catch_unwind(AssertUnwindSafe(call)).map_err(panic_failure)?;
    match hook {
        Hook::Ready(result) => result.map_err(Failure::Error),
        Hook::Async(future) => AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .map_err(panic_failure)?
            .map_err(Failure::Error),
    }
}

/// A hook called with panics caught: done, or waiting on its future.
pub(crate) enum Started<'a, T> {
    /// A ready hook's outcome.
    Done(Result<T, Failure>),
    /// An async hook's future, to be run by [`finish`].
    Waiting(BoxFuture<'a, Result<T, PluginError>>),
}

/// Calls a hook catching panics, without a future of its own: a ready hook (most are) is done
/// here, and only an async one needs [`finish`] awaited. (What [`hook`] does, without its
/// state machine and the moves of the hook's outcome in and out of it on every call.)
#[inline]
pub(crate) fn start<'a, T>(
    call: impl FnOnce() -> Hook<'a, Result<T, PluginError>>,
) -> Started<'a, T> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Hook::Ready(result)) => Started::Done(result.map_err(Failure::Error)),
        Ok(Hook::Async(future)) => Started::Waiting(future),
        Err(payload) => Started::Done(Err(panic_failure(payload))),
    }
}

/// Runs the future of an async hook started by [`start`], catching panics.
pub(crate) async fn finish<T>(future: BoxFuture<'_, Result<T, PluginError>>) -> Result<T, Failure> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(panic_failure)?
        .map_err(Failure::Error)
}

/// Runs a synchronous plugin call catching panics.
pub(crate) fn call<T>(call: impl FnOnce() -> T) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(call)).map_err(panic_failure)
}

/// Runs a synchronous plugin call that may fail, catching panics.
pub(crate) fn call_fallible<T>(
    call: impl FnOnce() -> Result<T, PluginError>,
) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(call))
        .map_err(panic_failure)?
        .map_err(Failure::Error)
}

fn panic_failure(payload: Box<dyn Any + Send>) -> Failure {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    Failure::Panic(message)
}

/// Displays an optional route as `namespace/name` or `-` (the no-route chain).
pub(crate) struct RouteName<'a>(pub(crate) Option<&'a ObjectKey>);

impl fmt::Display for RouteName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => key.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Logs a failure and tells the observer.
pub(crate) fn report(
    link: &Link,
    phase: HookPhase,
    route: Option<&ObjectKey>,
    failure: &Failure,
    observer: &dyn ChainObserver,
) {
    tracing::error!(
        alias = %link.alias,
        plugin = %link.plugin_kind,
        route = %RouteName(route),
        phase = phase.as_str(),
        error = %failure,
        "plugin failed"
    );
    observer.plugin_failed(&link.alias, &link.plugin_kind, route);
}

/// The answer to a request a plugin failed on: its status and a short plain body that names
/// the plugin and nothing of its internals.
pub(crate) fn failure_response(link: &Link, failure: &Failure) -> Response<ProxyBody> {
    respond::text(failure.status(), &format!("plugin {} failed", link.alias))
}
