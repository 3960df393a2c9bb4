//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3): the client's q-values decide, the
//! server's preference order breaks ties; `*` covers codings the client did not name.

use serde::Deserialize;

/// A content coding hookway can produce.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Encoding {
    /// `gzip` (flate2).
    #[serde(rename = "gzip")]
    Gzip,
    /// `br` (brotli).
    #[serde(rename = "br")]
    Brotli,
    /// `zstd`.
    #[serde(rename = "zstd")]
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    fn matches(self, token: &str) -> bool {
        token.eq_ignore_ascii_case(self.token())
            || (self == Encoding::Gzip && token.eq_ignore_ascii_case("x-gzip"))
    }
}

/// Parses a q-value (`q=0.5`); bad values count as 0 (not acceptable) rather than an error.
fn parse_q(params: &str) -> u16 {
    for param in params.split(';') {
        let param = param.trim();
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let v = v.trim();
        // Thousandths: "1", "1.0", "0.8", "0.125".
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return 0;
        }
        let frac_val = format!("{frac:0<3}").parse::<u16>().unwrap_or(0);
        return match int {
            "1" => 1000,
            "0" => frac_val,
            _ => 0,
        };
    }
    1000
}

/// The best of `supported` (in server preference order) for an `Accept-Encoding` value, or
/// `None` when the client accepts none of them.
pub fn negotiate(accept_encoding: &str, supported: &[Encoding]) -> Option<Encoding> {
    let mut best: Option<(u16, usize)> = None;
    for (rank, enc) in supported.iter().enumerate() {
        let mut named = None;
        let mut star = None;
        for item in accept_encoding.split(',') {
            let (token, params) = item.split_once(';').unwrap_or((item, ""));
            let token = token.trim();
            if enc.matches(token) {
                named = Some(parse_q(params));
            } else if token == "*" {
                star = Some(parse_q(params));
            }
        }
        let q = named.or(star).unwrap_or(0);
        if q == 0 {
            continue;
        }
        // Higher q wins; on equal q the earlier (server-preferred) coding stays.
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, rank));
        }
    }
    best.map(|(_, rank)| supported[rank])
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: &[Encoding] = &[Zstd, Brotli, Gzip];

    #[test]
    fn negotiation_table() {
        for (header, expect) in [
            ("gzip", Some(Gzip)),
            ("x-gzip", Some(Gzip)),
            ("GZIP", Some(Gzip)),
            ("gzip, br", Some(Brotli)),
            ("gzip, deflate, br, zstd", Some(Zstd)),
            ("gzip;q=1.0, br;q=0.5", Some(Gzip)),
            ("br;q=0.9, zstd;q=0.8, gzip;q=0.95", Some(Gzip)),
            ("zstd;q=0, gzip", Some(Gzip)),
            ("*", Some(Zstd)),
            ("*;q=0.5, br", Some(Brotli)),
            ("*;q=0", None),
            ("identity", None),
            ("deflate", None),
            ("", None),
            ("gzip;q=0", None),
            ("gzip;q=abc", None),
            ("gzip;q=0.001", Some(Gzip)),
        ] {
            assert_eq!(negotiate(header, ALL), expect, "{header:?}");
        }
    }

    #[test]
    fn server_order_breaks_ties() {
        assert_eq!(negotiate("gzip, br", &[Gzip, Brotli]), Some(Gzip));
        assert_eq!(negotiate("gzip, br", &[Brotli, Gzip]), Some(Brotli));
    }

    #[test]
    fn only_supported_codings_are_chosen() {
        assert_eq!(negotiate("br, zstd", &[Gzip]), None);
    }
}
