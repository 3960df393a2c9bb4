//! Bearer token check (constant-time).

use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The shared secret proxies present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its value (surrounding whitespace trimmed). Empty tokens are refused.
    pub fn new(value: &str) -> Result<Self, crate::Error> {
        let value = value.trim();
        if value.is_empty() {
            return Err(crate::Error::Config("the stream token is empty".into()));
        }
        Ok(Self(Arc::from(value.as_bytes())))
    }

    /// Reads the token from a file (a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, crate::Error> {
        let value = std::fs::read_to_string(path).map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&value)
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn check(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(presented) = header
            .and_then(|h| h.as_bytes().strip_prefix(b"Bearer "))
            .map(<[u8]>::trim_ascii)
        else {
            return false;
        };
        bool::from(presented.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = Token::new("s3cret\n").unwrap();
        assert!(t.check(Some(&HeaderValue::from_static("Bearer s3cret"))));
        assert!(!t.check(Some(&HeaderValue::from_static("Bearer s3cre"))));
        assert!(!t.check(Some(&HeaderValue::from_static("Basic s3cret"))));
        assert!(!t.check(None));
        assert!(Token::new("  ").is_err());
    }
}
