mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "lxd-connector",
        generate_all,
    });
}

use bindings::exports::orchestrator::connector::connector as wit;
use bindings::orchestrator::connector::lxd_remotes;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{Fields, OutgoingRequest, Scheme};

struct Hostile;

bindings::export!(Hostile with_types_in bindings);

/// What was kept alive by `hog`, so nothing is freed.
static mut HOARD: Vec<Vec<u8>> = Vec::new();

impl wit::Guest for Hostile {
    type Session = Session;
    type FileWriter = Nothing;
    type FileReader = Nothing;

    fn parse_name(name: String) -> Result<wit::Target, wit::Error> {
        Ok(wit::Target { host_name: name.clone(), data: vec![("instance".into(), name)] })
    }

    fn connect(target: wit::Target) -> Result<wit::Session, wit::Error> {
        let instance = target.data.iter().find(|(k, _)| k == "instance").map(|(_, v)| v.as_str()).unwrap_or("");
        match instance {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => loop {
                let mut chunk = vec![0u8; 16 << 20];
                for i in (0..chunk.len()).step_by(4096) {
                    chunk[i] = 1;
                }
                // SAFETY: single-threaded; only this arm touches it.
                #[allow(static_mut_refs)]
                unsafe {
                    HOARD.push(chunk)
                };
            },
            "trap" => panic!("the hostile component panics on purpose"),
            "snoop" => Err(wit::Error::Protocol(snoop())),
            _ => Err(wit::Error::Unsupported(format!("the hostile fixture does nothing for {instance:?}"))),
        }
    }

    fn connect_deferred(target: wit::Target) -> Result<wit::Session, wit::Error> {
        Self::connect(target)
    }
}

/// Tries every way out and reports, one line each, what came back.
fn snoop() -> String {
    let mut report = Vec::new();
    for path in [
        "/var/lib/lxd-connector-test/conf/client.key",
        "/root/.config/lxc/client.key",
        "/etc/passwd",
        ".",
        "/",
    ] {
        let got = match std::fs::read(path) {
            Ok(data) => format!("READ {} bytes: {}", data.len(), String::from_utf8_lossy(&data)),
            Err(e) => format!("denied ({e})"),
        };
        report.push(format!("file {path}: {got}"));
        let listed = match std::fs::read_dir(path) {
            Ok(entries) => format!("LISTED {} entries", entries.count()),
            Err(e) => format!("denied ({e})"),
        };
        report.push(format!("dir {path}: {listed}"));
    }
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    report.push(format!("env: {} variables {vars:?}", vars.len()));
    let tcp = match std::net::TcpStream::connect("127.0.0.1:8443") {
        Ok(_) => "CONNECTED".to_string(),
        Err(e) => format!("denied ({e})"),
    };
    report.push(format!("tcp 127.0.0.1:8443: {tcp}"));
    // The real address of the test LXD, a public name, and a made-up
    // authority in the host's own naming scheme.
    for authority in ["127.0.0.1:8443", "example.com", "remote-99.lxd-connector.invalid"] {
        report.push(format!("http {authority}: {}", http_get(authority)));
    }
    // A configured remote resolves to an opaque authority only.
    match lxd_remotes::resolve(None) {
        Ok(remote) => report.push(format!("resolve default: authority {}", remote.authority)),
        Err(e) => report.push(format!("resolve default: {e:?}")),
    }
    report.join("\n")
}

fn http_get(authority: &str) -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Https));
    if request.set_authority(Some(authority)).is_err() {
        return "refused by the guest bindings".into();
    }
    let _ = request.set_path_with_query(Some("/1.0"));
    match outgoing_handler::handle(request, None) {
        Err(e) => format!("denied ({e:?})"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("ANSWERED HTTP {}", response.status()),
                Some(Ok(Err(e))) => format!("denied ({e:?})"),
                other => format!("no answer ({other:?})"),
            }
        }
    }
}

/// Never handed out: `connect` never succeeds.
struct Session;

impl wit::GuestSession for Session {
    fn describe(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn run(&self, _: String, _: wit::RunOptions) -> Result<wit::RunOutput, wit::Error> {
        Err(wit::Error::Unsupported("hostile".into()))
    }
    fn put_file(&self, _: String, _: wit::PutOptions) -> Result<wit::FileWriter, wit::Error> {
        Err(wit::Error::Unsupported("hostile".into()))
    }
    fn get_file(&self, _: String) -> Result<wit::FileReader, wit::Error> {
        Err(wit::Error::Unsupported("hostile".into()))
    }
}

struct Nothing;

impl wit::GuestFileWriter for Nothing {
    fn write(&self, _: Vec<u8>) -> Result<(), wit::Error> {
        Ok(())
    }
    fn finish(&self) -> Result<(), wit::Error> {
        Ok(())
    }
}

impl wit::GuestFileReader for Nothing {
    fn info(&self) -> wit::FileInfo {
        wit::FileInfo { mode: 0, uid: 0, gid: 0, size: None }
    }
    fn read(&self, _: u32) -> Result<Option<Vec<u8>>, wit::Error> {
        Ok(None)
    }
}
