//! The credentials Secret a stack connects with (pure parts): the generated password, the `DATABASE_URL`, and
//! when to keep, reuse or rotate the password.
//!
//! The Secret is the source of truth for the password: it is generated once, kept by every reconcile, set
//! again on the role when the server's copy drifted, and replaced only when the resource asks for a rotation
//! (the [`ROTATE_ANNOTATION`] changes value).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

/// The Secret's name in the Tenant's or Customer's namespace.
pub const SECRET_NAME: &str = "bulkhead-database";
/// Annotate a Tenant or Customer with a new value of this to rotate its database password.
pub const ROTATE_ANNOTATION: &str = "bulkhead.dev/rotate-database-password";
/// On the Secret (and the stack's pod template): the rotation request last carried out.
pub const REVISION_ANNOTATION: &str = "bulkhead.dev/credentials-revision";
/// The annotation on the credentials Secret naming the PostgreSQL server the place was provisioned on: a
/// later reconcile that resolves to another server changes nothing there, and teardown drops on this one. A
/// Secret without it was written before servers had names: its place is on the default server.
pub const SERVER_ANNOTATION: &str = "bulkhead.dev/postgres-server";

/// Length of generated passwords: 40 characters of 62 ≈ 238 bits.
const PASSWORD_LENGTH: usize = 40;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The keys of the Secret.
pub mod keys {
    /// The login role.
    pub const USERNAME: &str = "username";
    /// Its password.
    pub const PASSWORD: &str = "password";
    /// The server's host as stacks reach it.
    pub const HOST: &str = "host";
    /// The server's port.
    pub const PORT: &str = "port";
    /// The database to connect to.
    pub const DATABASE: &str = "database";
    /// The schema (the role's search_path).
    pub const SCHEMA: &str = "schema";
    /// A ready connection URL.
    pub const DATABASE_URL: &str = "DATABASE_URL";
}

/// A password from the OS CSPRNG: alphanumeric, so it needs no escaping in a URL or a shell.
pub fn generate_password() -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LENGTH {
        getrandom::fill(&mut buf)?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == PASSWORD_LENGTH {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// Everything the Secret says, besides the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The login role.
    pub username: String,
    /// The host stacks connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The database.
    pub database: String,
    /// The schema.
    pub schema: String,
    /// Query parameters appended to the URL (e.g. `sslmode=require`), if any.
    pub url_params: Option<String>,
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `postgresql://` URL for a location and password.
pub fn database_url(location: &Location, password: &str) -> String {
    let host = if location.host.contains(':') {
        format!("[{}]", location.host)
    } else {
        location.host.clone()
    };
    let mut url = format!(
        "postgresql://{}:{}@{host}:{}/{}",
        encode(&location.username),
        encode(password),
        location.port,
        encode(&location.database)
    );
    if let Some(params) = &location.url_params {
        url.push('?');
        url.push_str(params);
    }
    url
}

/// The Secret's data for a location and password.
pub fn secret_data(location: &Location, password: &str) -> BTreeMap<String, ByteString> {
    let entries = [
        (keys::USERNAME, location.username.clone()),
        (keys::PASSWORD, password.to_owned()),
        (keys::HOST, location.host.clone()),
        (keys::PORT, location.port.to_string()),
        (keys::DATABASE, location.database.clone()),
        (keys::SCHEMA, location.schema.clone()),
        (keys::DATABASE_URL, database_url(location, password)),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect()
}

/// What to do with the password on this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordPlan {
    /// No usable Secret yet: generate a password and set it.
    Generate,
    /// The resource asks for a rotation the Secret has not seen: generate a new one and set it.
    Rotate {
        /// The rotation request being carried out.
        revision: String,
    },
    /// Keep the Secret's password (and repair the role if the server's copy drifted).
    Keep {
        /// The password.
        password: String,
    },
}

/// Decides from the existing Secret (its data and revision annotation) and the resource's rotation request.
pub fn plan_password(
    existing: Option<(&BTreeMap<String, ByteString>, Option<&str>)>,
    requested_revision: Option<&str>,
) -> PasswordPlan {
    let Some((data, revision)) = existing else {
        return PasswordPlan::Generate;
    };
    let password = data
        .get(keys::PASSWORD)
        .and_then(|p| String::from_utf8(p.0.clone()).ok())
        .filter(|p| !p.is_empty());
    let Some(password) = password else {
        return PasswordPlan::Generate;
    };
    match requested_revision {
        Some(wanted) if !wanted.is_empty() && Some(wanted) != revision => PasswordPlan::Rotate {
            revision: wanted.to_owned(),
        },
        _ => PasswordPlan::Keep { password },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        Location {
            username: "bk_acme_1234abcd_login".into(),
            host: "pg.db.svc".into(),
            port: 5432,
            database: "bulkhead".into(),
            schema: "bk_acme_1234abcd".into(),
            url_params: None,
        }
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), PASSWORD_LENGTH);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn urls_encode_their_parts() {
        assert_eq!(
            database_url(&location(), "pw"),
            "postgresql://bk_acme_1234abcd_login:pw@pg.db.svc:5432/bulkhead"
        );
        let odd = Location {
            database: "my db/1".into(),
            host: "::1".into(),
            url_params: Some("sslmode=require".into()),
            ..location()
        };
        assert_eq!(
            database_url(&odd, "p@ss:w/rd"),
            "postgresql://bk_acme_1234abcd_login:p%40ss%3Aw%2Frd@[::1]:5432/my%20db%2F1?sslmode=require"
        );
    }

    #[test]
    fn the_secret_has_every_key() {
        let data = secret_data(&location(), "pw");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "DATABASE_URL",
                "database",
                "host",
                "password",
                "port",
                "schema",
                "username"
            ]
        );
        assert_eq!(data["port"].0, b"5432");
    }

    #[test]
    fn passwords_are_kept_unless_missing_or_a_new_rotation_is_asked_for() {
        let data = secret_data(&location(), "old");
        assert_eq!(plan_password(None, None), PasswordPlan::Generate);
        assert_eq!(plan_password(None, Some("1")), PasswordPlan::Generate);
        let keep = PasswordPlan::Keep {
            password: "old".into(),
        };
        assert_eq!(plan_password(Some((&data, None)), None), keep);
        assert_eq!(plan_password(Some((&data, Some("1"))), Some("1")), keep);
        assert_eq!(plan_password(Some((&data, None)), Some("")), keep);
        assert_eq!(
            plan_password(Some((&data, Some("1"))), Some("2")),
            PasswordPlan::Rotate { revision: "2".into() }
        );
        let mut emptied = data.clone();
        emptied.insert(keys::PASSWORD.into(), ByteString(vec![]));
        assert_eq!(
            plan_password(Some((&emptied, None)), None),
            PasswordPlan::Generate
        );
    }
}
