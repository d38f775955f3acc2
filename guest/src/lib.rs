//! The LXD connector component.
//!
//! All LXD protocol logic lives here: inventory names, URLs, JSON,
//! operations, recorded output, files and error mapping. It reaches the
//! network only through `wasi:http`, and only the remotes the host resolves
//! for it. Everything but the two `wasm32`-only modules is plain Rust and is
//! unit-tested natively.

pub mod error;
pub mod http;
pub mod lxd;
pub mod names;

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "lxd-connector",
        generate_all,
    });
}
#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod wasi_http;
