//! The LXD connector component.
//!
//! All LXD protocol logic lives here: inventory names, URLs, JSON,
//! operations, recorded output, files and error mapping. It reaches the
//! network only through `wasi:http`, and only the remotes the host resolves
//! for it. Everything but the two `wasm32`-only modules is plain Rust and is
//! unit-tested natively.
//!
//! The component is built without Rust's standard library: std for
//! `wasm32-wasip2` links in imports of the environment, the standard
//! streams, terminals and `exit` that the connector never uses. Without
//! it, the component imports exactly what its world names.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

/// What std's prelude would bring, from `alloc`.
pub(crate) mod prelude {
    #[allow(unused_imports)]
    pub use alloc::borrow::ToOwned;
    #[allow(unused_imports)]
    pub use alloc::boxed::Box;
    #[allow(unused_imports)]
    pub use alloc::string::{String, ToString};
    #[allow(unused_imports)]
    pub use alloc::vec::Vec;
    #[allow(unused_imports)]
    pub use alloc::{format, vec};
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A bug in the connector: the call traps and the host retires the
/// session with an error naming the connector.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// What the component needs that Rust's core does not bring along on
/// `wasm32-wasip2` (it expects them from the C library std links).
#[cfg(target_arch = "wasm32")]
mod libc {
    /// # Safety
    /// `a` and `b` point to at least `n` readable bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: the caller guarantees `n` readable bytes at each.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    /// The canonical ABI's allocator, which std's C library would export
    /// on `wasm32-wasip2` (wit-bindgen leaves it to that library there).
    ///
    /// # Safety
    /// Called by the component model's glue with a block this allocator
    /// handed out (or none) and a valid alignment.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
        use alloc::alloc::{Layout, alloc, realloc};
        // SAFETY: the glue passes a power-of-two alignment and, for a
        // non-empty old block, the layout it was allocated with.
        let ptr = unsafe {
            if old_len == 0 {
                if new_len == 0 {
                    return align as *mut u8;
                }
                alloc(Layout::from_size_align_unchecked(new_len, align))
            } else {
                realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
            }
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable();
        }
        ptr
    }

    /// # Safety
    /// As [`memcmp`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the same contract.
        unsafe { memcmp(a, b, n) }
    }
}

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
