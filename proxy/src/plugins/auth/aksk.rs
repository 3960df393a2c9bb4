//! `aksk` credentials: HMAC-SHA256 request signatures with an access key / secret key pair.
//!
//! ```text
//! Authorization:  HMAC-SHA256 Access=<ak>, SignedHeaders=<h1;h2;...>, Signature=<hex>
//! X-Gateway-Date: 20260101T120000Z            (UTC, ISO 8601 basic; must be signed)
//!
//! CanonicalRequest = METHOD "\n"
//!                    PATH (as sent) "\n"
//!                    QUERY (the `k=v` pairs as sent, sorted bytewise, joined by `&`) "\n"
//!                    for each signed header, in SignedHeaders order: lower(name) ":" trim(value) "\n"
//!                    SignedHeaders
//! StringToSign     = "HMAC-SHA256" "\n" X-Gateway-Date "\n" hex(sha256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(secret key, StringToSign))
//! ```
//!
//! The body is not part of the signature (hooks see the head only). Requests whose date is
//! more than `clock_skew_seconds` away from the proxy's clock are refused.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use http::{header, request, HeaderName};
use sha2::{Digest, Sha256};

use super::request::strip_scheme;
use super::store::Identity;
use super::{Outcome, Verifier};

/// The header carrying the signing time.
pub const DATE_HEADER: &str = "x-gateway-date";
/// The `Authorization` scheme.
pub const SCHEME: &str = "HMAC-SHA256";

/// Secret keys by access key.
pub struct AkSk {
    keys: HashMap<String, (Vec<u8>, Identity)>,
    clock_skew_seconds: u64,
}

impl AkSk {
    /// From the Secret's (identity = access key, secret key) pairs.
    pub fn new(entries: Vec<(Identity, String)>, clock_skew_seconds: u64) -> Self {
        let keys = entries
            .into_iter()
            .map(|(identity, sk)| (identity.consumer.id.clone(), (sk.into_bytes(), identity)))
            .collect();
        Self {
            keys,
            clock_skew_seconds,
        }
    }
}

/// The parsed `Authorization` parameters.
pub(crate) struct Signed<'a> {
    pub(crate) access: &'a str,
    pub(crate) signed_headers: &'a str,
    pub(crate) signature: &'a str,
}

/// `HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`; `None` unless exactly those three.
pub(crate) fn parse_authorization(value: &str) -> Option<Signed<'_>> {
    let params = strip_scheme(value, SCHEME)?;
    let (mut access, mut signed_headers, mut signature) = (None, None, None);
    for part in params.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Access" => access = Some(v.trim()),
            "SignedHeaders" => signed_headers = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => return None,
        }
    }
    Some(Signed {
        access: access?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// The canonical request (see the module docs); `None` when a signed header is missing or
/// not visible ASCII.
pub fn canonical_request(req: &request::Parts, signed_headers: &str) -> Option<String> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(req.uri.path());
    out.push('\n');
    if let Some(q) = req.uri.query() {
        let mut pairs: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
        pairs.sort_unstable();
        out.push_str(&pairs.join("&"));
    }
    out.push('\n');
    for name in signed_headers.split(';') {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = if name == header::HOST {
            // HTTP/2 requests carry the host in the URI authority.
            req.headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()))?
        } else {
            req.headers.get(&name)?.to_str().ok()?
        };
        out.push_str(name.as_str());
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    out.push_str(signed_headers);
    Some(out)
}

/// The string the signature covers.
pub fn string_to_sign(date: &str, canonical_request: &str) -> String {
    format!(
        "{SCHEME}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Signs a request (what clients do; used by tests and tools).
pub fn sign(secret_key: &[u8], date: &str, canonical_request: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key).expect("HMAC takes any key length");
    mac.update(string_to_sign(date, canonical_request).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `20260101T120000Z` as unix seconds.
pub fn parse_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years >= 1970.
    let y = if mo <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3_600 + mi * 60 + sec)
}

impl Verifier for AkSk {
    fn verify(&self, req: &request::Parts, now_secs: u64) -> Outcome<'_> {
        let Some(signed) = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| strip_scheme(v, SCHEME).is_some())
        else {
            return Outcome::Absent;
        };
        let Some(signed) = parse_authorization(signed) else {
            return Outcome::Invalid("malformed signature parameters");
        };
        if !signed
            .signed_headers
            .split(';')
            .any(|h| h.eq_ignore_ascii_case(DATE_HEADER))
        {
            return Outcome::Invalid("x-gateway-date is not signed");
        }
        let Some((date, when)) = req
            .headers
            .get(DATE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|d| Some((d, parse_date(d)?)))
        else {
            return Outcome::Invalid("missing or malformed x-gateway-date");
        };
        if now_secs.abs_diff(when) > self.clock_skew_seconds {
            return Outcome::Invalid("x-gateway-date outside the allowed clock skew");
        }
        let Some((sk, identity)) = self.keys.get(signed.access) else {
            return Outcome::Invalid("unknown access key");
        };
        let Some(canonical) = canonical_request(req, signed.signed_headers) else {
            return Outcome::Invalid("a signed header is missing");
        };
        let Ok(signature) = hex::decode(signed.signature) else {
            return Outcome::Invalid("malformed signature");
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(sk).expect("HMAC takes any key length");
        mac.update(string_to_sign(date, &canonical).as_bytes());
        // `verify_slice` compares in constant time.
        match mac.verify_slice(&signature) {
            Ok(()) => Outcome::Valid(identity),
            Err(_) => Outcome::Invalid("signature mismatch"),
        }
    }

    fn strip(&self, req: &mut request::Parts) {
        req.headers.remove(header::AUTHORIZATION);
    }

    fn challenge(&self) -> &'static str {
        SCHEME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_date("20231114T221320Z"), Some(1_700_000_000));
        assert_eq!(parse_date("20240229T000000Z"), Some(1_709_164_800));
        for bad in [
            "20231114 221320Z",
            "2023111T221320Z",
            "20231314T221320Z",
            "2023111xT221320Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
