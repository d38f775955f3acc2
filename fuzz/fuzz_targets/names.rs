//! Inventory names and the other validated names (guest/src/names.rs).
//!
//! Never a panic; a name that parses has parts that validate on their own
//! (what the component's `connect` checks again); percent-encoding is
//! reversible and yields only URL-safe characters.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lxd_connector_guest::names::{
    encode, parse_inventory_name, validate_instance, validate_path, validate_project, validate_remote,
};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    match parse_inventory_name(name) {
        Ok(parsed) => {
            validate_instance(&parsed.instance).expect("a parsed instance validates");
            assert!(!parsed.instance.contains(':'));
            if let Some(remote) = &parsed.remote {
                validate_remote(remote).expect("a parsed remote validates");
                assert_eq!(format!("{remote}:{}", parsed.instance), name);
            } else {
                assert_eq!(parsed.instance, name);
            }
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    let _ = validate_project(name);
    let _ = validate_path(name);

    let encoded = encode(name);
    assert!(
        encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)),
        "{encoded:?}"
    );
    assert_eq!(decode(&encoded).as_deref(), Some(data), "{encoded:?}");
});

fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
