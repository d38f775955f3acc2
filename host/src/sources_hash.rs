// Included by `build.rs` and by the test that proves the embedded
// component is fresh: both must hash the guest sources the same way.

/// FNV-1a over the paths and contents of the files the guest is built
/// from, in a stable order.
fn sources_hash(root: &Path) -> u64 {
    let mut files = Vec::new();
    for p in ["guest/src", "guest/Cargo.toml", "wit"] {
        collect(&root.join(p), &mut files);
    }
    files.sort();
    let mut h: u64 = 0xcbf29ce484222325;
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).to_string_lossy().into_owned();
        for b in rel.bytes().chain(std::fs::read(&f).unwrap_or_default()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().for_each(|e| collect(&e.path(), out)),
        Err(_) if path.is_file() => out.push(path.to_path_buf()),
        Err(_) => {}
    }
}
