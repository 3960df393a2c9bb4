//! Waiting for the API server (or anything) to reach a state: poll with a deadline, never a fixed
//! sleep. A timeout names what was awaited and what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

use super::Error;

/// How often [`until`] asks again.
pub const POLL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, at most for `timeout` (at least once). `Err(seen)` from
/// `check` means "not yet", with what it saw; the last one is reported on timeout.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    timeout,
                    seen,
                })
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
