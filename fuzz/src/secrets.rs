//! The "no key material in messages" property.

use std::collections::HashSet;

/// Shortest run of key text that counts as leaked. Long enough that fixed
/// message text (English words, paths) never matches by chance.
pub const MIN_LEAK: usize = 16;

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// A run of [`MIN_LEAK`] bytes.
pub type Window = [u8; MIN_LEAK];

/// Every window of [`MIN_LEAK`] bytes of `bytes`.
fn windows(bytes: &[u8]) -> impl Iterator<Item = Window> + '_ {
    bytes.windows(MIN_LEAK).map(|w| w.try_into().expect("MIN_LEAK bytes"))
}

/// The pieces of `secret` that must never show up in a message: every
/// window of [`MIN_LEAK`] bytes inside a run of base64 characters (the body
/// of a PEM key), except windows that also occur in `public` (other inputs
/// and paths, which messages may legitimately quote).
///
/// Hash sets rather than substring searches: fast, and they give the
/// fuzzer's comparison tracing nothing to steer towards.
pub fn secret_windows(secret: &[u8], public: &[&[u8]]) -> HashSet<Window> {
    let public: HashSet<Window> = public.iter().flat_map(|p| windows(p)).collect();
    secret
        .split(|b| !is_base64(*b))
        .flat_map(windows)
        .filter(|w| !public.contains(w))
        .collect()
}

/// Panics when `message` holds one of `secret`.
pub fn assert_no_leak(message: &str, secret: &HashSet<Window>, what: &str) {
    if secret.is_empty() {
        return;
    }
    if let Some(w) = windows(message.as_bytes()).find(|w| secret.contains(w)) {
        panic!("{what}: the message quotes {:?} of the secret file: {message}", String::from_utf8_lossy(&w));
    }
}

/// Whether `bytes` look like a PEM file as a key would be written (every
/// non-empty line a BEGIN/END line or base64), so that a config.yml with this
/// content is a key copied over it.
pub fn looks_like_pem(bytes: &[u8]) -> bool {
    let mut begins = 0;
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if (line.starts_with(b"-----BEGIN ") || line.starts_with(b"-----END ")) && line.ends_with(b"-----") {
            begins += usize::from(line.starts_with(b"-----BEGIN "));
            continue;
        }
        if !line.iter().all(|b| is_base64(*b)) {
            return false;
        }
    }
    begins > 0
}

/// The error, its sources and its Debug form, as anything could print them.
pub fn all_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{err}\n{err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        text.push('\n');
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
