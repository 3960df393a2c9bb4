//! `multipart/form-data` bodies, kept part by part so untouched parts (files included) are sent
//! on byte for byte.

use bytes::Bytes;

/// One part: its form name (when it has one) and its raw headers + content.
#[derive(Debug, Clone)]
pub struct Part {
    /// `name` of the part's `Content-Disposition`.
    pub name: Option<String>,
    /// Whether the part is a file upload (`filename=`).
    pub is_file: bool,
    /// Raw bytes between the delimiter line and the next delimiter.
    raw: Bytes,
}

/// A parsed multipart body.
#[derive(Debug, Clone)]
pub struct Multipart {
    boundary: String,
    /// Parts in order.
    pub parts: Vec<Part>,
}

fn disposition_name(headers: &str) -> (Option<String>, bool) {
    let mut name = None;
    let mut is_file = false;
    for line in headers.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for param in v.split(';') {
            let param = param.trim();
            if let Some(n) = param.strip_prefix("name=") {
                name = Some(n.trim_matches('"').to_string());
            } else if param.starts_with("filename") {
                is_file = true;
            }
        }
    }
    (name, is_file)
}

impl Multipart {
    /// Parses `body` with `boundary`.
    pub fn parse(body: &Bytes, boundary: &str) -> Result<Self, String> {
        let delim = format!("--{boundary}");
        let finder = memchr::memmem::Finder::new(delim.as_bytes());
        let mut pos = finder
            .find(body)
            .ok_or("multipart body without its boundary")?
            + delim.len();
        let mut parts = Vec::new();
        loop {
            let rest = &body[pos..];
            if rest.starts_with(b"--") {
                break;
            }
            let start = pos
                + if rest.starts_with(b"\r\n") {
                    2
                } else {
                    return Err("multipart delimiter not followed by CRLF".into());
                };
            let next = memchr::memmem::find(&body[start..], format!("\r\n{delim}").as_bytes())
                .ok_or("multipart body ends without its closing boundary")?;
            let raw = body.slice(start..start + next);
            let head_end = memchr::memmem::find(&raw, b"\r\n\r\n").unwrap_or(raw.len());
            let headers = String::from_utf8_lossy(&raw[..head_end]);
            let (name, is_file) = disposition_name(&headers);
            parts.push(Part { name, is_file, raw });
            pos = start + next + 2 + delim.len();
        }
        Ok(Self {
            boundary: boundary.to_string(),
            parts,
        })
    }

    /// The text value of the first non-file part named `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        let part = self
            .parts
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && !p.is_file)?;
        let head_end = memchr::memmem::find(&part.raw, b"\r\n\r\n")?;
        Some(String::from_utf8_lossy(&part.raw[head_end + 4..]).into_owned())
    }

    /// Whether a part named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.parts.iter().any(|p| p.name.as_deref() == Some(name))
    }

    /// Replaces every part named `name` with one text part holding `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        let escaped = name.replace('"', "%22");
        let raw = format!("Content-Disposition: form-data; name=\"{escaped}\"\r\n\r\n{value}");
        self.parts.push(Part {
            name: Some(name.to_string()),
            is_file: false,
            raw: Bytes::from(raw),
        });
    }

    /// Removes every part named `name`.
    pub fn remove(&mut self, name: &str) {
        self.parts.retain(|p| p.name.as_deref() != Some(name));
    }

    /// The body bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(
            self.parts
                .iter()
                .map(|p| p.raw.len() + self.boundary.len() + 8)
                .sum::<usize>()
                + self.boundary.len()
                + 8,
        );
        for p in &self.parts {
            out.extend_from_slice(b"--");
            out.extend_from_slice(self.boundary.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&p.raw);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(self.boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01--XyZ-ish\r\n--XyZ--\r\n";

    #[test]
    fn parse_edit_and_write_back() {
        let mut m = Multipart::parse(&Bytes::from_static(BODY.as_bytes()), "XyZ").unwrap();
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.get("a").as_deref(), Some("1"));
        assert!(m.contains("f"));
        assert_eq!(m.get("f"), None, "files are not text values");
        assert_eq!(
            m.to_bytes(),
            BODY.as_bytes(),
            "untouched body is byte-exact"
        );
        m.set("a", "2");
        m.set("b", "3");
        let again = Multipart::parse(&m.to_bytes(), "XyZ").unwrap();
        assert_eq!(again.get("a").as_deref(), Some("2"));
        assert_eq!(again.get("b").as_deref(), Some("3"));
        assert!(again.to_bytes().windows(9).any(|w| w == b"--XyZ-ish"));
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert!(Multipart::parse(&Bytes::from_static(b"no boundary"), "XyZ").is_err());
        assert!(Multipart::parse(&Bytes::from_static(b"--XyZ\r\nabc"), "XyZ").is_err());
    }
}
