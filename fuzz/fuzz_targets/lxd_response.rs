//! LXD's answers, fuzzer-chosen, through the guest's real protocol code
//! (`guest/src/lxd.rs`): connect (plain, cached, deferred), run (with and
//! without stdin, timeout, env/cwd/user), put, get, describe.
//!
//! Input: a plan line, then the answers (see `fake_http`), separated by
//! `\n%%\n` lines. The plan's first byte picks how the session opens
//! (`c` connect, `k` connect with the server facts cached, `d` deferred,
//! `D` deferred with cached facts); each further byte is a call: `r` run,
//! `s` run with stdin, `t` run with a timeout, `e` run with env, cwd, user
//! and group, `p` put, `q` put then write after finishing, `g` get, `i`
//! describe.
//!
//! Every call returns a value or a typed error: never a panic, never a
//! request outside the API, never an endless loop.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use lxd_connector_fuzz::fake_http::{FuzzHttp, SEPARATOR, split};
use lxd_connector_guest::error::Error;
use lxd_connector_guest::lxd::{self, Instance, PutOptions, RunOptions, ServerCache, ServerInfo};

/// At most this many calls per input.
const MAX_CALLS: usize = 8;

/// A cache that may know the server already.
struct Cache(RefCell<Option<ServerInfo>>);

impl ServerCache for Cache {
    fn recall(&self) -> Option<ServerInfo> {
        self.0.borrow().clone()
    }
    fn remember(&self, info: &ServerInfo) {
        assert_eq!(info.auth, "trusted", "remembered a server that failed the checks");
        *self.0.borrow_mut() = Some(info.clone());
    }
}

fn cache(known: bool) -> Cache {
    Cache(RefCell::new(known.then(|| ServerInfo {
        auth: "trusted".into(),
        api_version: "1.0".into(),
        server: "lxd".into(),
        server_version: "5.0.2".into(),
        extensions: vec!["container_exec_recording".into()],
    })))
}

fuzz_target!(|data: &[u8]| {
    let (plan, answers) = match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (&data[..at], &data[at + SEPARATOR.len()..]),
        None => (data, &[][..]),
    };
    debug_assert!(split(plan, SEPARATOR).len() == 1);
    let http = FuzzHttp::new(answers);
    let (open, calls) = plan.split_first().unwrap_or((&b'c', &[]));
    let inst = match open {
        b'k' => lxd::connect_cached(http.clone(), "fz", "default", "c1", &cache(true)),
        b'd' => Ok(lxd::open_deferred(http.clone(), "fz", "default", "c1", Box::new(cache(false)))),
        b'D' => Ok(lxd::open_deferred(http.clone(), "fz", "default", "c1", Box::new(cache(true)))),
        _ => lxd::connect(http.clone(), "fz", "default", "c1"),
    };
    let inst = match inst {
        Ok(inst) => inst,
        Err(err) => return check_error(&err),
    };
    for call in calls.iter().take(MAX_CALLS) {
        if let Err(err) = one_call(&inst, *call) {
            check_error(&err);
        }
    }
});

fn one_call(inst: &Instance<FuzzHttp>, call: u8) -> Result<(), Error> {
    match call {
        b'r' | b's' | b't' | b'e' => {
            let mut opts = RunOptions::default();
            match call {
                b's' => opts.stdin = Some(b"some input\n".to_vec()),
                b't' => opts.timeout_ms = Some(1500),
                b'e' => {
                    opts.env = vec![("A".into(), "b c".into())];
                    opts.cwd = Some("/root dir".into());
                    opts.user = Some(1000);
                    opts.group = Some(1000);
                }
                _ => {}
            }
            inst.run("echo hi; exit 3", &opts)?;
        }
        b'p' | b'q' => {
            let mut writer = inst.put_file("/tmp/a file", PutOptions { mode: Some(0o600), uid: None, gid: Some(7), create_parents: call == b'q' })?;
            writer.write(b"abc")?;
            writer.write(b"def")?;
            writer.finish()?;
            if call == b'q' {
                assert!(matches!(writer.write(b"x"), Err(Error::InvalidInput(_))));
                assert!(matches!(writer.finish(), Err(Error::InvalidInput(_))));
            }
        }
        b'g' => {
            let mut reader = inst.get_file("/etc/host name")?;
            let _ = reader.info();
            // A body is finite: reading it ends, well before this many reads.
            for _ in 0..1_000_000 {
                if reader.read(4096)?.is_none() {
                    return Ok(());
                }
            }
            panic!("a finite file never ended");
        }
        b'i' => {
            let facts = inst.describe();
            assert!(facts.len() >= 9, "{facts:?}");
        }
        _ => {}
    }
    Ok(())
}

/// Every error says something.
fn check_error(err: &Error) {
    assert!(!err.to_string().is_empty(), "{err:?}");
}
