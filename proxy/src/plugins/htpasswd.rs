//! htpasswd files: `user:hash` lines, and checking a password against a hash in the formats
//! nginx's `auth_basic_user_file` accepts and `htpasswd` writes: bcrypt (`$2y$`, `$2a$`, `$2b$`;
//! `htpasswd -B`), APR1-MD5 (`$apr1$`, `htpasswd`'s default) and MD5-crypt (`$1$`), SHA-1
//! (`{SHA}`, `htpasswd -s`) and `{PLAIN}`. Other formats (DES and SHA-crypt `$5$`/`$6$`) are
//! refused when the Secret is checked, naming the user.

use std::collections::BTreeMap;

use base64::Engine;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// A stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hash {
    /// bcrypt, checked by the `bcrypt` crate (slow by design: run off the async threads).
    Bcrypt(String),
    /// `$apr1$salt$…` or `$1$salt$…`: magic, salt and the whole hash.
    Md5Crypt {
        /// `$apr1$` or `$1$`.
        magic: &'static str,
        /// Up to 8 characters.
        salt: String,
        /// The whole stored string.
        full: String,
    },
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{PLAIN}password`.
    Plain(String),
}

impl Hash {
    /// Parses a stored hash; `Err` says why it is not usable.
    pub fn parse(stored: &str) -> Result<Self, String> {
        if ["$2y$", "$2a$", "$2b$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            stored
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("bcrypt hash: {e}"))?;
            return Ok(Hash::Bcrypt(stored.to_string()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = stored.strip_prefix(magic) {
                let (salt, _) = rest
                    .split_once('$')
                    .ok_or("MD5 hash without a salt separator")?;
                if salt.len() > 8 {
                    return Err("MD5 salt longer than 8 characters".into());
                }
                return Ok(Hash::Md5Crypt {
                    magic,
                    salt: salt.to_string(),
                    full: stored.to_string(),
                });
            }
        }
        if let Some(b64) = stored.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("{{SHA}} hash: {e}"))?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| "{SHA} hash is not 20 bytes".to_string())?;
            return Ok(Hash::Sha1(digest));
        }
        if let Some(plain) = stored.strip_prefix("{PLAIN}") {
            return Ok(Hash::Plain(plain.to_string()));
        }
        Err("unsupported hash format (use bcrypt, $apr1$, $1$, {SHA} or {PLAIN})".into())
    }

    /// Whether the password matches (constant time for the fast formats).
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(stored) => bcrypt::verify(password, stored).unwrap_or(false),
            Hash::Md5Crypt { magic, salt, full } => {
                let computed = md5_crypt(password.as_bytes(), salt.as_bytes(), magic);
                bool::from(computed.as_bytes().ct_eq(full.as_bytes()))
            }
            Hash::Sha1(digest) => {
                let computed: [u8; 20] = Sha1::digest(password.as_bytes()).into();
                bool::from(computed.ct_eq(digest))
            }
            Hash::Plain(stored) => bool::from(password.as_bytes().ct_eq(stored.as_bytes())),
        }
    }

    /// Whether checking costs enough CPU to move off the async threads.
    pub fn is_slow(&self) -> bool {
        matches!(self, Hash::Bcrypt(_))
    }
}

/// The users of an htpasswd file (`user:hash` per line; blank lines and `#` comments skipped).
pub fn parse_file(text: &str) -> Result<BTreeMap<String, Hash>, String> {
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: not user:hash", i + 1))?;
        add(&mut users, user, hash)?;
    }
    Ok(users)
}

/// The users of a map (user → hash), as ingress-nginx's `auth-map` Secrets hold them.
pub fn parse_map(map: &BTreeMap<String, String>) -> Result<BTreeMap<String, Hash>, String> {
    let mut users = BTreeMap::new();
    for (user, hash) in map {
        add(&mut users, user, hash.trim())?;
    }
    Ok(users)
}

fn add(users: &mut BTreeMap<String, Hash>, user: &str, hash: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let parsed = Hash::parse(hash).map_err(|e| format!("user {user:?}: {e}"))?;
    if users.insert(user.to_string(), parsed).is_some() {
        return Err(format!("user {user:?} is listed twice"));
    }
    Ok(())
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5-crypt (`$1$`, FreeBSD) and its Apache variant (`$apr1$`), as `magic salt $ hash`.
fn md5_crypt(pw: &[u8], salt: &[u8], magic: &str) -> String {
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i != 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 != 0 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 != 0 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    let f = fin;
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(f[i]);
    to64((b(0) << 16) | (b(6) << 8) | b(12), 4);
    to64((b(1) << 16) | (b(7) << 8) | b(13), 4);
    to64((b(2) << 16) | (b(8) << 8) | b(14), 4);
    to64((b(3) << 16) | (b(9) << 8) | b(15), 4);
    to64((b(4) << 16) | (b(10) << 8) | b(5), 4);
    to64(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_formats_table() {
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        // Vectors from `openssl passwd -apr1 / -1` and `openssl dgst -sha1 | base64`.
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("$apr1$abcdefgh$ZAdX7G.l3eDbgTYbm5ePE0", "secret pass", true),
            ("$apr1$abcdefgh$ZAdX7G.l3eDbgTYbm5ePE0", "secret Pass", false),
            ("$apr1$xy$43..WIhbfuznGvwoCyUek/", "", true),
            ("$1$12345678$OYWcP3UEQ50eVnrC3.L3v/", "pw", true),
            ("$1$12345678$OYWcP3UEQ50eVnrC3.L3v/", "pw2", false),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret", true),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secreT", false),
            ("{PLAIN}open", "open", true),
            ("{PLAIN}open", "opeN", false),
            (&bcrypt, "pw", true),
            (&bcrypt, "px", false),
        ];
        for (stored, password, want) in cases {
            let hash = Hash::parse(stored).unwrap();
            assert_eq!(hash.verify(password), *want, "{stored} / {password:?}");
        }
        assert!(Hash::parse(&bcrypt).unwrap().is_slow());
    }

    #[test]
    fn unusable_hashes_are_refused_with_the_reason() {
        #[rustfmt::skip]
        let cases = [
            ("$6$salt$abc", "unsupported hash format"),
            ("abJnggxhB/yWI", "unsupported hash format"),
            ("$2y$05$short", "bcrypt hash"),
            ("$apr1$nosalt", "without a salt separator"),
            ("$apr1$123456789$x", "longer than 8"),
            ("{SHA}AAAA", "not 20 bytes"),
        ];
        for (stored, want) in cases {
            let e = Hash::parse(stored).unwrap_err();
            assert!(e.contains(want), "{stored}: {e}");
        }
    }

    #[test]
    fn files_and_maps() {
        let users = parse_file("# team\nalice:{PLAIN}a\n\nbob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n")
            .unwrap();
        assert_eq!(users.len(), 2);
        assert!(users["bob"].verify("secret"));
        assert!(parse_file("alice:{PLAIN}a\nalice:{PLAIN}b\n")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_file("nocolon\n").unwrap_err().contains("line 1"));
        assert!(parse_file("eve:$6$x$y\n")
            .unwrap_err()
            .contains("user \"eve\""));
        let map = [("carol".to_string(), "{PLAIN}c".to_string())].into();
        assert!(parse_map(&map).unwrap()["carol"].verify("c"));
    }
}
