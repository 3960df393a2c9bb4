//! Credentials never reach the log: the values of query parameters that carry credentials are
//! replaced by `REDACTED` in every logged target.
//!
//! Redacted names (compared case-insensitively, raw and percent-decoded): the defaults below
//! (the auth plugins' default credential parameters and common token names), the names auth
//! plugins on the request's chain read credentials from (recorded in
//! [`Ctx::credential_params`](crate::plugin::Ctx::credential_params)), and the plugin's own
//! `redact` list. Header values (cookies and `Authorization` included) are never logged; only
//! `Host` is.

use std::borrow::Cow;

/// Query parameters always redacted.
pub const DEFAULT_REDACTED: &[&str] = &[
    "apikey",
    "api_key",
    "jwt_token",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "password",
    "client_secret",
    "signature",
];

/// The value written instead of a credential.
pub const REDACTED: &str = "REDACTED";

/// `target` (a path and query) with the values of the parameters `is_secret` names redacted;
/// borrowed when nothing is redacted.
pub fn redact_query<'a>(target: &'a str, is_secret: impl Fn(&str) -> bool) -> Cow<'a, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        is_secret(name)
            || (name.contains(['%', '+'])
                && form_urlencoded::parse(name.as_bytes())
                    .next()
                    .is_some_and(|(decoded, _)| is_secret(&decoded)))
    };
    if !query
        .split('&')
        .any(|pair| pair.contains('=') && secret(pair))
    {
        return Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_redacted() {
        let names = ["apikey", "jwt_token", "sig"];
        let is_secret = |n: &str| names.iter().any(|s| s.eq_ignore_ascii_case(n));
        let table = [
            ("/a", "/a"),
            ("/a?x=1", "/a?x=1"),
            ("/a?apikey=k1", "/a?apikey=REDACTED"),
            ("/a?x=1&APIKEY=k1&y=2", "/a?x=1&APIKEY=REDACTED&y=2"),
            (
                "/a?jwt_token=e.y.j&sig=abc",
                "/a?jwt_token=REDACTED&sig=REDACTED",
            ),
            ("/a?api%6Bey=k1", "/a?api%6Bey=REDACTED"),
            ("/a?apikey", "/a?apikey"),
            ("/a?apikeyx=1", "/a?apikeyx=1"),
            ("/a?q=apikey=1", "/a?q=apikey=1"),
        ];
        for (input, expected) in table {
            assert_eq!(redact_query(input, is_secret), expected, "{input}");
        }
    }
}
