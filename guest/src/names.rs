//! Inventory names, instance/remote/project names and file paths: validated
//! here, before anything is sent, because LXD itself is lenient (it runs
//! `c1%00junk` in `c1`).

use crate::error::Error;

/// `[REMOTE:]INSTANCE` split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryName {
    pub remote: Option<String>,
    pub instance: String,
}

/// Parses `[REMOTE:]INSTANCE`, validating both parts.
pub fn parse_inventory_name(name: &str) -> Result<InventoryName, Error> {
    let (remote, instance) = match name.split_once(':') {
        Some((remote, instance)) => (Some(remote), instance),
        None => (None, name),
    };
    if let Some(remote) = remote {
        validate_remote(remote).map_err(|m| Error::Inventory(format!("{name:?}: {m}")))?;
    }
    validate_instance(instance).map_err(|m| Error::Inventory(format!("{name:?}: {m}")))?;
    Ok(InventoryName { remote: remote.map(str::to_string), instance: instance.to_string() })
}

/// LXD's instance name rules (a hostname label): 1-63 ASCII letters, digits
/// and `-`, not starting with a digit or `-`, not ending with `-`.
pub fn validate_instance(name: &str) -> Result<(), String> {
    const FIX: &str = "instance names are 1-63 ASCII letters, digits and '-', \
                       starting with a letter and not ending with '-'";
    if name.is_empty() {
        return Err(format!("the instance name is empty; {FIX}"));
    }
    if name.len() > 63 {
        return Err(format!("the instance name is {} characters long; {FIX}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(format!("the instance name {name:?} contains {c:?}; {FIX}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || name.ends_with('-') {
        return Err(format!("the instance name {name:?} is not valid; {FIX}"));
    }
    Ok(())
}

/// Remote names as lxc allows them: not empty, no `:` or `/`, no control
/// characters or spaces.
pub fn validate_remote(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the remote name before ':' is empty; write REMOTE:INSTANCE or just INSTANCE \
                    for the default remote"
            .to_string());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '/' || *c == ':') {
        return Err(format!("the remote name {name:?} contains {c:?}, which remote names cannot contain"));
    }
    Ok(())
}

/// Project names: not empty, at most 63 characters, no `/`, spaces or
/// control characters (LXD's own rules are close to these).
pub fn validate_project(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the project name is empty".to_string());
    }
    if name.chars().count() > 63 {
        return Err(format!("the project name {name:?} is longer than 63 characters"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '/') {
        return Err(format!("the project name {name:?} contains {c:?}"));
    }
    Ok(())
}

/// Paths inside an instance must be absolute and free of NUL bytes.
pub fn validate_path(path: &str) -> Result<(), Error> {
    if !path.starts_with('/') {
        return Err(Error::InvalidInput(format!(
            "the path {path:?} is not absolute; paths inside an instance start with '/'"
        )));
    }
    if path.contains('\0') {
        return Err(Error::InvalidInput(format!("the path {path:?} contains a NUL byte")));
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`,
/// for use in a query value or a path segment list.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name_has_no_remote() {
        let n = parse_inventory_name("c1").unwrap();
        assert_eq!(n, InventoryName { remote: None, instance: "c1".into() });
    }

    #[test]
    fn remote_prefix_is_split_at_the_first_colon() {
        let n = parse_inventory_name("prod-eu:web-1").unwrap();
        assert_eq!(n.remote.as_deref(), Some("prod-eu"));
        assert_eq!(n.instance, "web-1");
    }

    #[test]
    fn nul_and_percent_tricks_are_rejected_before_sending() {
        for bad in ["c1\0junk", "c1%00junk", "c1/x", "c 1", "c1?x", "ç1", ""] {
            let err = parse_inventory_name(bad).unwrap_err();
            assert!(matches!(err, Error::Inventory(_)), "{bad:?} gave {err:?}");
        }
    }

    #[test]
    fn instance_name_shape_follows_lxd_rules() {
        assert!(validate_instance(&"a".repeat(63)).is_ok());
        assert!(validate_instance(&"a".repeat(64)).unwrap_err().contains("64 characters"));
        assert!(validate_instance("1abc").is_err());
        assert!(validate_instance("-abc").is_err());
        assert!(validate_instance("abc-").is_err());
        assert!(validate_instance("a-b-9").is_ok());
    }

    #[test]
    fn empty_or_odd_remote_names_are_rejected_with_the_fix() {
        let err = parse_inventory_name(":c1").unwrap_err().to_string();
        assert!(err.contains("remote name before ':' is empty"), "{err}");
        assert!(parse_inventory_name("a b:c1").is_err());
        assert!(parse_inventory_name("a:b:c1").is_err(), "instance part 'b:c1' has a colon");
    }

    #[test]
    fn paths_must_be_absolute_without_nul() {
        assert!(validate_path("/etc/hosts").is_ok());
        assert!(matches!(validate_path("etc/hosts"), Err(Error::InvalidInput(_))));
        assert!(matches!(validate_path("/a\0b"), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn encoding_keeps_slashes_and_escapes_the_rest() {
        assert_eq!(encode("/a b/ç?&=%#\n"), "/a%20b/%C3%A7%3F%26%3D%25%23%0A");
        assert_eq!(encode("/tmp/x.y_z~-"), "/tmp/x.y_z~-");
    }

    #[test]
    fn project_names_reject_separators_and_controls() {
        assert!(validate_project("default").is_ok());
        assert!(validate_project("a/b").is_err());
        assert!(validate_project("").is_err());
        assert!(validate_project("a\nb").is_err());
    }
}
