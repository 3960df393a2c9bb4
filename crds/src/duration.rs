//! Durations as written in manifests: `500ms`, `5s`, `1m30s`, `2h` (the Gateway API format).

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {input:?}: expected digits followed by h, m, s or ms, e.g. 500ms, 5s, 1m30s"
)]
pub struct DurationError {
    /// The text that was refused.
    pub input: String,
}

/// Parses `1h2m3s4ms`-style durations (each unit at most once is not enforced; units add up).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let bytes = input.as_bytes();
    if bytes.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i || i - start > 9 {
            return Err(err());
        }
        let n: u64 = input[start..i].parse().map_err(|_| err())?;
        let unit = if input[i..].starts_with("ms") {
            i += 2;
            Duration::from_millis(n)
        } else {
            let d = match bytes.get(i) {
                Some(b'h') => Duration::from_secs(n * 3600),
                Some(b'm') => Duration::from_secs(n * 60),
                Some(b's') => Duration::from_secs(n),
                _ => return Err(err()),
            };
            i += 1;
            d
        };
        total += unit;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let table = [
            ("500ms", 500),
            ("5s", 5_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1s500ms", 1_500),
        ];
        for (text, ms) in table {
            assert_eq!(parse(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for text in ["", "5", "s", "5x", "-1s", "1.5s", "5 s", "9999999999s"] {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
    }
}
