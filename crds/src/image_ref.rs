//! Checking of container image references against the grammar of the distribution project's `reference`
//! package: `[registry[:port]/]path[:tag][@algorithm:hex]`.

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The reference is empty.
    #[error("must not be empty")]
    Empty,
    /// The reference is longer than the 255 characters a repository name may have (plus tag and digest).
    #[error("is longer than {0} characters")]
    TooLong(usize),
    /// The registry part is malformed.
    #[error("registry `{0}` is not a host name or IP address with an optional port")]
    Registry(String),
    /// A path component is malformed.
    #[error("path component `{0}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`")]
    Component(String),
    /// The tag is malformed.
    #[error("tag `{0}` must be 1 to 128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`")]
    Tag(String),
    /// The digest is malformed.
    #[error("digest `{0}` must be sha256:<64 hex digits> or sha512:<128 hex digits>")]
    Digest(String),
}

/// Checks an image reference. Accepts what `docker pull` accepts, except that a registry must be given as a
/// host name or IPv4 address (no IPv6 literals).
pub fn check(reference: &str) -> Result<(), ImageRefError> {
    if reference.is_empty() {
        return Err(ImageRefError::Empty);
    }
    const MAX: usize = crate::rules::MAX_IMAGE_LEN;
    if reference.len() > MAX {
        return Err(ImageRefError::TooLong(MAX));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A tag follows the last ':' only if no '/' comes after it (else the ':' belongs to a registry port).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.len() > crate::rules::MAX_IMAGE_NAME_LEN {
        return Err(ImageRefError::TooLong(crate::rules::MAX_IMAGE_NAME_LEN));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && is_registry(parts[0]) {
        check_registry(parts[0])?;
        parts.remove(0);
    }
    for component in parts {
        check_component(component)?;
    }
    Ok(())
}

fn is_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_registry(registry: &str) -> Result<(), ImageRefError> {
    let err = || ImageRefError::Registry(registry.to_owned());
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err());
    }
    if host.is_empty() {
        return Err(err());
    }
    for label in host.split('.') {
        let bytes = label.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !ok {
            return Err(err());
        }
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), ImageRefError> {
    let err = || ImageRefError::Component(component.to_owned());
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(err());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: one '.', one '_', two '_', or any run of '-'.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return Err(err()),
        }
        if i == start || !bytes.get(i).copied().is_some_and(alnum) {
            return Err(err());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), ImageRefError> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ImageRefError::Tag(tag.to_owned()))
    }
}

fn check_digest(digest: &str) -> Result<(), ImageRefError> {
    let ok = match digest.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64 && is_lower_hex(hex),
        Some(("sha512", hex)) => hex.len() == 128 && is_lower_hex(hex),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ImageRefError::Digest(digest.to_owned()))
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The references that must be accepted are cases of `crate::validate::cases`, which both the operator's
    // checks and the API server's CEL rule run.

    #[test]
    fn refuses_malformed_references() {
        assert_eq!(check(""), Err(ImageRefError::Empty));
        assert!(matches!(check("Nginx"), Err(ImageRefError::Component(_))));
        assert!(matches!(check("nginx:"), Err(ImageRefError::Tag(_))));
        assert!(matches!(check("nginx:.bad"), Err(ImageRefError::Tag(_))));
        assert!(matches!(check("nginx@sha256:abc"), Err(ImageRefError::Digest(_))));
        assert!(matches!(check("a//b"), Err(ImageRefError::Component(_))));
        assert!(matches!(check("a/b_"), Err(ImageRefError::Component(_))));
        assert!(matches!(check("a/b___c"), Err(ImageRefError::Component(_))));
        assert!(matches!(check("a/b..c"), Err(ImageRefError::Component(_))));
        assert!(matches!(
            check("bad_host.:5000/a"),
            Err(ImageRefError::Registry(_))
        ));
        assert!(matches!(check("host:port/a"), Err(ImageRefError::Registry(_))));
        assert!(matches!(
            check("nginx; rm -rf /"),
            Err(ImageRefError::Tag(_) | ImageRefError::Component(_))
        ));
        assert!(matches!(
            check(&"a".repeat(300)),
            Err(ImageRefError::TooLong(255))
        ));
    }
}
