//! Inventory names, instance/remote/project names and file paths: validated
//! here, before anything is sent, because LXD itself is lenient (it runs
//! `c1%00junk` in `c1`).

#[allow(unused_imports)]
use crate::prelude::*;
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
    let shown = shown(name);
    if let Some(remote) = remote {
        validate_remote(remote).map_err(|m| Error::Inventory(format!("{shown}: {m}")))?;
    }
    validate_instance(instance).map_err(|m| Error::Inventory(format!("{shown}: {m}")))?;
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
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(format!("the instance name {} contains {c:?}; {FIX}", shown(name)));
    }
    if name.len() > 63 {
        return Err(format!("the instance name {} is {} characters long; {FIX}", shown(name), name.len()));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("the instance name {} does not start with a letter; {FIX}", shown(name)));
    }
    if name.ends_with('-') {
        return Err(format!("the instance name {} ends with '-'; {FIX}", shown(name)));
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
    const FIX: &str = "`lxc remote list` shows the configured remotes";
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '/' || *c == ':') {
        return Err(format!("the remote name {} contains {c:?}, which remote names cannot contain; {FIX}", shown(name)));
    }
    // The pinned certificate is the file servercerts/NAME.crt, and a file
    // name holds at most 255 bytes: a longer remote cannot be configured.
    if name.len() > MAX_REMOTE_BYTES {
        return Err(format!(
            "the remote name {} is {} bytes long, longer than any remote can be (at most {MAX_REMOTE_BYTES}, \
             as it names the file servercerts/NAME.crt); {FIX}",
            shown(name),
            name.len()
        ));
    }
    Ok(())
}

/// Longest remote name: `NAME.crt` must fit in a 255-byte file name.
const MAX_REMOTE_BYTES: usize = 255 - ".crt".len();

/// Project names: not empty, at most 63 characters, no `/`, spaces or
/// control characters (LXD's own rules are close to these).
pub fn validate_project(name: &str) -> Result<(), String> {
    const FIX: &str = "`lxc project list` shows the projects";
    if name.is_empty() {
        return Err(format!("the project name is empty; name a project or leave it out for the remote's default; {FIX}"));
    }
    if name.chars().count() > 63 {
        return Err(format!("the project name {} is longer than 63 characters; {FIX}", shown(name)));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '/') {
        return Err(format!("the project name {} contains {c:?}, which project names cannot contain; {FIX}", shown(name)));
    }
    Ok(())
}

/// Longest path Linux accepts (`PATH_MAX` with its NUL).
const MAX_PATH_BYTES: usize = 4095;
/// Longest file name Linux file systems accept (`NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;

/// Paths inside an instance must be absolute, free of NUL bytes and within
/// Linux's length limits. Any other byte is a legitimate file name byte
/// (spaces, newlines, unicode), and `.`/`..` mean what they mean to the
/// instance's kernel (LXD resolves them inside the instance, never above
/// its root).
pub fn validate_path(path: &str) -> Result<(), Error> {
    if !path.starts_with('/') {
        let guess = match path {
            "" => String::new(),
            p if p.starts_with('.') => String::new(),
            p => format!(" (did you mean {:?}?)", format!("/{p}")),
        };
        return Err(Error::InvalidInput(format!(
            "the path {} is not absolute; paths inside an instance start with '/'{guess}",
            shown(path)
        )));
    }
    if path.contains('\0') {
        return Err(Error::InvalidInput(format!(
            "the path {} contains a NUL byte, which no file name can hold; remove it",
            shown(path)
        )));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(Error::InvalidInput(format!(
            "the path {} is {} bytes long; Linux paths are at most {MAX_PATH_BYTES} bytes",
            shown(path),
            path.len()
        )));
    }
    if let Some(name) = path.split('/').find(|n| n.len() > MAX_NAME_BYTES) {
        return Err(Error::InvalidInput(format!(
            "the path {} has a file name of {} bytes ({}); Linux file names are at most {MAX_NAME_BYTES} bytes",
            shown(path),
            name.len(),
            shown(name)
        )));
    }
    Ok(())
}

/// `value` quoted for a message, its middle left out when it is long, so
/// that a 300-character name does not drown the message.
pub fn shown(value: &str) -> String {
    const KEEP: usize = 32;
    let count = value.chars().count();
    if count <= 2 * KEEP + 16 {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(KEEP).collect();
    let tail: String = value.chars().skip(count - KEEP).collect();
    format!("{:?} ({count} characters, shortened)", format!("{head}…{tail}"))
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
    fn every_bad_name_is_one_inventory_error_naming_the_culprit_and_the_rule() {
        let long = "a".repeat(300);
        let long_remote = format!("{}:c1", "r".repeat(300));
        // (name, what the message must name, the rule or fix it must give)
        let cases: [(&str, &str, &str); 14] = [
            ("", "is empty", "ASCII letters"),
            ("c1\0x", "'\\0'", "ASCII letters"),
            ("c1/x", "'/'", "ASCII letters"),
            ("c1%00", "'%'", "ASCII letters"),
            ("c 1", "' '", "ASCII letters"),
            ("ç1", "'ç'", "ASCII letters"),
            ("1c", "does not start with a letter", "ASCII letters"),
            ("c1-", "ends with '-'", "ASCII letters"),
            (&long, "300 characters long", "1-63"),
            ("r:", "is empty", "ASCII letters"),
            (":c1", "remote name before ':' is empty", "just INSTANCE"),
            ("a b:c1", "\"a b\" contains ' '", "lxc remote list"),
            ("a/b:c1", "contains '/'", "lxc remote list"),
            (&long_remote, "300 bytes long", "lxc remote list"),
        ];
        for (name, culprit, fix) in cases {
            let err = parse_inventory_name(name).unwrap_err();
            let Error::Inventory(msg) = &err else { panic!("{name:?} gave {err:?}") };
            assert!(msg.contains(culprit), "{name:?}: the message does not name {culprit:?}: {msg}");
            assert!(msg.contains(fix), "{name:?}: the message does not give {fix:?}: {msg}");
            assert!(msg.len() < 400, "{name:?}: the message is {} bytes: {msg}", msg.len());
        }
    }

    #[test]
    fn long_values_are_shortened_in_messages_but_short_ones_are_quoted_whole() {
        assert_eq!(shown("c1"), "\"c1\"");
        let long = format!("{}{}", "a".repeat(150), "b".repeat(150));
        let s = shown(&long);
        assert!(s.starts_with("\"aaaa") && s.contains("bbbb\"") && s.contains("300 characters"), "{s}");
        assert!(s.len() < 100, "{s}");
        assert!(shown(&"é".repeat(300)).contains("300 characters"), "counted in characters, cut on boundaries");
    }

    #[test]
    fn odd_but_legal_file_names_pass_and_bad_paths_say_why() {
        for ok in ["/tmp/a b", "/tmp/nl\nname", "/tmp/çé ü", "/tmp/../etc/x", "/tmp/./x", "/", &format!("/tmp/{}", "x".repeat(255))] {
            assert!(validate_path(ok).is_ok(), "{ok:?} was refused");
        }
        let long_name = format!("/tmp/{}", "x".repeat(256));
        let long_path = "/abc".repeat(1024);
        for (path, why) in [
            ("tmp/x", "did you mean \"/tmp/x\""),
            ("", "not absolute"),
            ("../x", "not absolute"),
            ("/a\0b", "NUL byte"),
            (long_name.as_str(), "file name of 256 bytes"),
            (long_path.as_str(), "4096 bytes long"),
        ] {
            match validate_path(path) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains(why), "{path:?}: {msg}"),
                other => panic!("{path:?} gave {other:?}"),
            }
        }
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
