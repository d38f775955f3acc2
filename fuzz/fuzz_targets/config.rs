//! The lxc client config as `lxd-connector` reads it: `config.yml`, then the
//! remote's endpoint, then `client.crt`, `client.key` and
//! `servercerts/<remote>.crt` (the path `policy::Remotes::resolve` takes).
//!
//! Input: up to four files separated by NUL bytes, in this order:
//! `config.yml`, `client.crt`, `client.key`, the server certificate (written
//! for every remote). A file that is not in the input does not exist.
//!
//! Never a panic; and no error message quotes the client key, nor a key
//! copied over `config.yml`; every remote that loads has a valid name; an
//! HTTPS endpoint prints as an address that parses back to itself.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lxd_connector_fuzz::config::{ClientConfig, Endpoint, Remote, remote_name_problem};
use lxd_connector_fuzz::secrets::{all_text, assert_no_leak, looks_like_pem, secret_windows};
use lxd_connector_fuzz::tls::RemoteTls;

/// At most this many remotes get the TLS files checked per input.
const TLS_REMOTES: usize = 3;

fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        base.join(format!("lxd-connector-fuzz-config.{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut files = data.splitn(4, |b| *b == 0);
    let config_yml = files.next().unwrap_or_default();
    let client_crt = files.next();
    let client_key = files.next();
    let server_crt = files.next();

    let dir = workdir();
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("servercerts")).expect("work dir");
    fs::write(dir.join("config.yml"), config_yml).expect("write config.yml");
    if let Some(crt) = client_crt {
        fs::write(dir.join("client.crt"), crt).expect("write client.crt");
    }
    if let Some(key) = client_key {
        fs::write(dir.join("client.key"), key).expect("write client.key");
    }
    let dir_text = dir.display().to_string();

    let config = match ClientConfig::load(dir) {
        Ok(config) => config,
        Err(err) => {
            let text = all_text(&err);
            if looks_like_pem(config_yml) {
                // A key copied over config.yml: nothing of it may be echoed.
                let windows = secret_windows(config_yml, &[dir_text.as_bytes()]);
                assert_no_leak(&text, &windows, "config.yml holding a PEM file");
            }
            return;
        }
    };

    assert!(config.remotes.contains_key("local") && config.remotes.contains_key("images"));
    for (name, remote) in &config.remotes {
        assert_eq!(name, &remote.name);
        assert_eq!(remote_name_problem(name), None, "{name:?} loaded");
        assert!(!remote.protocol.is_empty() && !remote.project.is_empty());
        if let Ok(endpoint) = remote.endpoint() {
            check_endpoint(remote, &endpoint);
        }
    }
    let _ = config.remote(None).map_err(|e| e.to_string());

    if let Some(crt) = server_crt {
        for name in config.remotes.keys() {
            // Names with no file-system meaning only; lxc's names are file names.
            let _ = fs::write(config.server_cert_path(name), crt);
        }
    }
    let mut public: Vec<&[u8]> = vec![config_yml, dir_text.as_bytes()];
    public.extend(client_crt);
    public.extend(server_crt);
    let key_windows = client_key.map(|key| secret_windows(key, &public)).unwrap_or_default();

    // The default remote first, as the CLI resolves it, then a few others.
    let default = config.remote(None).ok().map(|r| r.name.clone());
    let names = default.iter().chain(config.remotes.keys().filter(|n| Some(*n) != default.as_ref()));
    for name in names.take(TLS_REMOTES) {
        let remote = &config.remotes[name];
        if !matches!(remote.endpoint(), Ok(Endpoint::Https { .. })) {
            continue;
        }
        match RemoteTls::load(&config, name) {
            Ok(tls) => {
                assert_eq!(tls.remote(), name);
                assert_eq!(tls.pinned_sha256().len(), 64);
                let shown = format!("{tls:?}");
                assert_no_leak(&shown, &key_windows, "RemoteTls Debug");
            }
            Err(err) => assert_no_leak(&all_text(&err), &key_windows, "TLS setup error"),
        }
    }
});

/// An endpoint's address parses back to the same endpoint.
fn check_endpoint(remote: &Remote, endpoint: &Endpoint) {
    if let Endpoint::Https { host, port } = endpoint {
        assert!(!host.is_empty() && *port != 0, "{endpoint:?} from {:?}", remote.addr);
        let _ = RemoteTls::server_name(host);
    }
    let again = Remote { addr: endpoint.to_string(), ..remote.clone() };
    assert_eq!(again.endpoint().ok().as_ref(), Some(endpoint), "{:?} printed as {:?}", remote.addr, again.addr);
}
