//! Keeps secrets the stack was handed (bearer tokens, cookies, database passwords) out of what it prints.

use std::borrow::Cow;

/// What replaces a secret in printed text.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not searched for: replacing every `a` or `12` would garble the output, and
/// such values are not credentials worth hiding.
const MIN_SECRET_LEN: usize = 4;

/// A set of strings that must never appear in printed output.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// Adds a secret (ignored when shorter than a few bytes).
    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN || self.secrets.contains(&secret) {
            return;
        }
        self.secrets.push(secret);
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds a credential-bearing header value: the whole value; after an authentication scheme (`Bearer
    /// <token>`, `Basic <credentials>`) what follows it and each word of that, but not the scheme itself; each
    /// `;`-separated part and the value of each `name=value` part (cookies).
    pub fn add_header_value(&mut self, value: &str) {
        let value = value.trim();
        self.add(value);
        if let Some((_scheme, credentials)) = value.split_once([' ', '\t']) {
            let credentials = credentials.trim();
            self.add(credentials);
            for word in credentials.split_whitespace() {
                self.add(word);
            }
        }
        for part in value.split(';').map(str::trim) {
            self.add(part);
            if let Some((_, v)) = part.split_once('=') {
                self.add(v.trim());
            }
        }
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// Redacts in place.
    pub fn string(&self, text: &mut String) {
        if let Cow::Owned(redacted) = self.text(text) {
            *text = redacted;
        }
    }

    /// Redacts every string and every object key of a JSON value, in place.
    pub fn json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => self.string(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.json(&mut item);
                    map.insert(self.text(&key).into_owned(), item);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_hidden_whole_and_in_parts() {
        let mut r = Redactor::default();
        r.add_header_value("Bearer eyJhbGciOi.payload.sig");
        r.add_header_value("session=c00kievalue; theme=dark");
        assert_eq!(
            r.text("auth Bearer eyJhbGciOi.payload.sig, fwd eyJhbGciOi.payload.sig"),
            "auth <redacted>, fwd <redacted>"
        );
        assert_eq!(r.text("saw c00kievalue"), "saw <redacted>");
        // The scheme is not a secret.
        assert_eq!(r.text("Bearer token required"), "Bearer token required");
        assert_eq!(r.text("theme dark"), "theme <redacted>");
        // Parts too short to search for without garbling everything else are left alone.
        assert_eq!(r.text("a b"), "a b");
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let mut r = Redactor::default();
        r.add("s3cr3t-token");
        let mut value = serde_json::json!({
            "headers": {"x-fwd": "Bearer s3cr3t-token", "s3cr3t-token": 1},
            "list": ["s3cr3t-token", 2, null],
        });
        r.json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(value["headers"]["x-fwd"], "Bearer <redacted>");
        assert_eq!(value["headers"]["<redacted>"], 1);
        assert_eq!(value["list"][0], "<redacted>");
    }

    #[test]
    fn short_values_are_not_secrets() {
        let mut r = Redactor::default();
        r.add("abc");
        assert!(r.is_empty());
        assert_eq!(r.text("abc"), "abc");
    }
}
