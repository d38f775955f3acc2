//! A hostile component for the sandbox tests (`tests/sandbox.rs`): it
//! implements the `lxd-connector` world, and `connect` misbehaves as the
//! instance name says:
//!
//! - `spin`: loops forever without calling the host;
//! - `hog`: allocates (and touches) memory without bound;
//! - `trap`: panics;
//! - `snoop`: tries every way out it can name — files (the lxc client key
//!   included), environment variables, sockets, and `wasi:http` requests
//!   to authorities the host did not hand out — and fails with a report of
//!   what it got, for the test to inspect.
//!
//! Anything else connects to nothing and fails with `unsupported`. Built
//! for `wasm32-wasip2` by the test that uses it; natively it is empty.

#[cfg(target_arch = "wasm32")]
mod component;
