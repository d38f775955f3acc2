//! The compiled-component cache: used when valid, rebuilt when not.

use lxd_connector::cache::{Origin, entry_path};
use lxd_connector::{Runtime, RuntimeOptions};

fn load(dir: &std::path::Path) -> Origin {
    Runtime::new(RuntimeOptions { cache_dir: Some(dir.to_path_buf()), ..RuntimeOptions::default() })
        .expect("the component loads")
        .component_origin()
}

fn only_entry(dir: &std::path::Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn a_second_load_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load(dir.path()), Origin::Compiled);
    assert_eq!(load(dir.path()), Origin::Cached);
    // Keyed by the component's hash and the engine.
    let engine = wasmtime::Engine::default();
    let expected = entry_path(&engine, lxd_connector::EMBEDDED_COMPONENT, dir.path());
    let name = only_entry(dir.path()).file_name().unwrap().to_string_lossy().into_owned();
    let prefix = expected.file_name().unwrap().to_string_lossy().split('-').next().unwrap().to_string();
    assert!(name.starts_with(&prefix), "{name} vs {prefix}");
}

#[test]
fn a_corrupt_entry_is_rebuilt_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    load(dir.path());
    let entry = only_entry(dir.path());
    let good = std::fs::read(&entry).unwrap();

    // One flipped bit in the compiled code.
    let mut bad = good.clone();
    let last = bad.len() - 100;
    bad[last] ^= 0x10;
    std::fs::write(&entry, &bad).unwrap();
    assert_eq!(load(dir.path()), Origin::Compiled);
    assert_eq!(std::fs::read(&entry).unwrap(), good, "the entry was rewritten whole");
    assert_eq!(load(dir.path()), Origin::Cached);

    // Truncated, empty, and garbage with a checksum that matches it.
    for bad in [good[..good.len() / 2].to_vec(), Vec::new()] {
        std::fs::write(&entry, &bad).unwrap();
        assert_eq!(load(dir.path()), Origin::Compiled);
    }
    let garbage = b"not a compiled component".to_vec();
    let sum = ring::digest::digest(&ring::digest::SHA256, &garbage);
    let mut forged = b"lxd-connector\x00c1".to_vec();
    forged.extend_from_slice(sum.as_ref());
    forged.extend_from_slice(&garbage);
    std::fs::write(&entry, &forged).unwrap();
    assert_eq!(load(dir.path()), Origin::Compiled);
    // And the cached component works after all that.
    assert_eq!(load(dir.path()), Origin::Cached);
}

#[test]
fn an_unwritable_cache_folder_only_costs_the_compile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(load(&file), Origin::Compiled);
    assert_eq!(load(&file), Origin::Compiled);
}
