//! The `time` field: RFC 3339 in UTC, as the `time` crate writes it, with the date and the
//! time of day formatted once per second and thread instead of once per line (formatting a
//! whole timestamp was about 650 instructions of every logged request).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `YYYY-MM-DDTHH:MM:SS`.
const SECOND_LEN: usize = 19;

thread_local! {
    /// The last second formatted on this thread and its text.
    static SECOND: Cell<(u64, [u8; SECOND_LEN])> = const { Cell::new((u64::MAX, [0; SECOND_LEN])) };
}

/// `now` as RFC 3339 UTC text in `buf` (at most 30 bytes are used): the second, then the
/// fraction without trailing zeros (none when it is zero), then `Z`. Empty when `now` cannot
/// be written so (before 1970 or after 9999).
pub(super) fn rfc3339(now: SystemTime, buf: &mut [u8; 48]) -> &str {
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        return "";
    };
    let secs = since.as_secs();
    let second = SECOND.with(|cell| {
        let (cached, text) = cell.get();
        if cached == secs {
            return Some(text);
        }
        let text = format_second(secs)?;
        cell.set((secs, text));
        Some(text)
    });
    let Some(second) = second else {
        return "";
    };
    buf[..SECOND_LEN].copy_from_slice(&second);
    let mut len = SECOND_LEN;
    let nanos = since.subsec_nanos();
    if nanos != 0 {
        buf[len] = b'.';
        len += 1;
        let mut digits = [0u8; 9];
        let mut rest = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let kept = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        buf[len..len + kept].copy_from_slice(&digits[..kept]);
        len += kept;
    }
    buf[len] = b'Z';
    len += 1;
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// The date and time of day of `secs` since the epoch, or `None` past what RFC 3339 writes.
fn format_second(secs: u64) -> Option<[u8; SECOND_LEN]> {
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    at.format_into(&mut cursor, &Rfc3339).ok()?;
    // A whole second: `YYYY-MM-DDTHH:MM:SSZ`.
    let written = usize::try_from(cursor.position()).ok()?;
    (written == SECOND_LEN + 1).then(|| {
        let mut second = [0u8; SECOND_LEN];
        second.copy_from_slice(&text[..SECOND_LEN]);
        second
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// What the `time` crate writes for the same instant.
    fn reference(now: SystemTime) -> String {
        OffsetDateTime::from(now).format(&Rfc3339).unwrap()
    }

    #[test]
    fn the_text_is_what_the_time_crate_writes() {
        let base = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let nanos = [
            0,
            1,
            5,
            10,
            100,
            120_000_000,
            123_456_789,
            500_000_000,
            999_999_999,
            100_000_000,
            7_000,
        ];
        let mut buf = [0u8; 48];
        for secs in [0u64, 59, 60, 86_399, 86_400, 31_536_000] {
            for n in nanos {
                let now = base + Duration::new(secs, n);
                assert_eq!(rfc3339(now, &mut buf), reference(now), "{secs} s {n} ns");
            }
        }
        // The cached second is not reused for another one.
        let a = base + Duration::from_secs(1);
        let b = base + Duration::from_secs(2);
        assert_eq!(rfc3339(a, &mut buf), reference(a));
        assert_eq!(rfc3339(b, &mut buf), reference(b));
        assert_eq!(rfc3339(UNIX_EPOCH, &mut buf), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn instants_rfc3339_cannot_write_are_empty() {
        let mut buf = [0u8; 48];
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before, &mut buf), "");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far, &mut buf), "");
    }
}
