//! The one home of the low-level memory helpers every kernel shares: checked element
//! counts, fallible allocation, `SendPtr`, and the huge-page hint.
//!
//! Rust aborts the whole process when an allocation fails. Every buffer whose size follows
//! from user input (a target shape, a patch size, a number of channels) therefore comes from
//! here: the size is computed with overflow checks (a `KernelError::InvalidArgument` naming
//! the argument) and the allocation is fallible (`KernelError::OutOfMemory` naming the
//! buffer and its size, raised as `MemoryError` in Python). Deep inside a kernel, where
//! threading a `Result` through every loop would cost more than it buys, [`zeroed`] and
//! [`with_capacity`] unwind with that error as payload (`resume_unwind`, so no panic message
//! is printed), and the bindings' `catch_unwind` turns it back into the error.

use std::panic::resume_unwind;

use crate::{KernelError, KernelResult};

/// Types whose all-zero bit pattern is a valid value (so `alloc_zeroed` memory is initialised).
///
/// # Safety
/// Implement only for types where every all-zero byte pattern is a valid value.
pub unsafe trait Zeroable: Copy {}
// SAFETY: all-zero bits are 0 / +0.0 for every primitive number type.
unsafe impl Zeroable for half::f16 {}
// SAFETY: as above.
unsafe impl Zeroable for f32 {}
// SAFETY: as above.
unsafe impl Zeroable for f64 {}
// SAFETY: as above.
unsafe impl Zeroable for i8 {}
// SAFETY: as above.
unsafe impl Zeroable for i16 {}
// SAFETY: as above.
unsafe impl Zeroable for i32 {}
// SAFETY: as above.
unsafe impl Zeroable for i64 {}
// SAFETY: as above.
unsafe impl Zeroable for u8 {}
// SAFETY: as above.
unsafe impl Zeroable for u16 {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for u64 {}
// SAFETY: as above.
unsafe impl Zeroable for usize {}

/// The product of `dims`, or an error naming `arg` when it overflows.
pub fn elements(arg: &'static str, dims: &[usize]) -> KernelResult<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(arg, format!("{dims:?} has more elements than this machine can address")))
}

/// `count` elements of `T` in bytes, or an error naming `arg` when that overflows `isize`.
pub fn bytes_of<T>(arg: &'static str, count: usize) -> KernelResult<usize> {
    count
        .checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| KernelError::invalid(arg, format!("{count} elements do not fit in memory addressing")))
}

/// Total physical memory in bytes (None where unknown).
pub fn physical_memory() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_int, c_long};
        extern "C" {
            fn sysconf(name: c_int) -> c_long;
        }
        const SC_PAGESIZE: c_int = 30;
        const SC_PHYS_PAGES: c_int = 85;
        // SAFETY: sysconf only reads system configuration.
        let (pages, page) = unsafe { (sysconf(SC_PHYS_PAGES), sysconf(SC_PAGESIZE)) };
        if pages > 0 && page > 0 {
            return (pages as usize).checked_mul(page as usize);
        }
    }
    None
}

fn out_of_memory(what: &'static str, bytes: usize) -> KernelError {
    KernelError::OutOfMemory { what, bytes }
}

/// A buffer larger than the machine's RAM can never be filled: with Linux overcommit such
/// an allocation may succeed and the process is then killed when the pages are touched,
/// so it is refused up front.
fn check_fits(what: &'static str, bytes: usize) -> KernelResult<()> {
    match physical_memory() {
        Some(ram) if bytes > ram => Err(out_of_memory(what, bytes)),
        _ => Ok(()),
    }
}

/// A zero-filled vector of `len` elements, or `OutOfMemory` naming `what`. It comes from
/// `alloc_zeroed` (fresh pages, touched lazily), and large ones are advised as huge pages.
pub fn try_zeroed<T: Zeroable>(what: &'static str, len: usize) -> KernelResult<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if len == 0 || size == 0 {
        return Ok(Vec::new());
    }
    let bytes = bytes_of::<T>(what, len).map_err(|_| out_of_memory(what, usize::MAX))?;
    check_fits(what, bytes)?;
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| out_of_memory(what, bytes))?;
    // SAFETY: non-zero size; all-zero bits are a valid T (Zeroable); the layout is the one Vec
    // uses for `len` elements of T, so Vec may own and free the allocation.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut T;
        if ptr.is_null() {
            return Err(out_of_memory(what, bytes));
        }
        advise_huge_pages(ptr as *mut u8, bytes);
        Ok(Vec::from_raw_parts(ptr, len, len))
    }
}

/// An empty vector with room for `cap` elements, or `OutOfMemory` naming `what`.
pub fn try_with_capacity<T>(what: &'static str, cap: usize) -> KernelResult<Vec<T>> {
    let bytes = bytes_of::<T>(what, cap).map_err(|_| out_of_memory(what, usize::MAX))?;
    check_fits(what, bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(cap).map_err(|_| out_of_memory(what, bytes))?;
    Ok(v)
}

/// `len` copies of `value`, or `OutOfMemory` naming `what`.
pub fn try_filled<T: Clone>(what: &'static str, len: usize, value: T) -> KernelResult<Vec<T>> {
    let mut v = try_with_capacity(what, len)?;
    v.resize(len, value);
    Ok(v)
}

/// Unwinds with `err` as payload (no panic message); `catch_kernel_unwind` gets it back.
pub fn raise(err: KernelError) -> ! {
    resume_unwind(Box::new(err))
}

/// [`try_zeroed`] for call sites deep inside a kernel: unwinds with the error instead.
pub fn zeroed<T: Zeroable>(what: &'static str, len: usize) -> Vec<T> {
    try_zeroed(what, len).unwrap_or_else(|e| raise(e))
}

/// [`try_with_capacity`] for call sites deep inside a kernel: unwinds with the error instead.
pub fn with_capacity<T>(what: &'static str, cap: usize) -> Vec<T> {
    try_with_capacity(what, cap).unwrap_or_else(|e| raise(e))
}

/// [`try_filled`] for call sites deep inside a kernel: unwinds with the error instead.
pub fn filled<T: Clone>(what: &'static str, len: usize, value: T) -> Vec<T> {
    try_filled(what, len, value).unwrap_or_else(|e| raise(e))
}

/// Turns an unwinding payload back into a `KernelError` when it is one raised by [`raise`]
/// (or by a capacity overflow, which only oversized inputs can cause); any other panic
/// comes back as its message.
pub fn payload_to_error(payload: Box<dyn std::any::Any + Send>) -> Result<KernelError, String> {
    match payload.downcast::<KernelError>() {
        Ok(e) => Ok(*e),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string())),
    }
}

/// A raw pointer that may cross threads: each user promises (and documents with a SAFETY
/// comment) that threads touch disjoint elements, or only read.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: SendPtr is only a carrier; every dereference is justified at its use site.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// Carries a read-only source pointer (shared by threads that only read through it).
    pub fn from_const(ptr: *const T) -> Self {
        SendPtr(ptr.cast_mut())
    }

    /// The pointer for reading.
    pub fn as_const(self) -> *const T {
        self.0.cast_const()
    }
}

/// Asks Linux to back a large buffer with transparent huge pages (fewer page faults and TLB
/// misses); a hint only, failures are ignored.
pub fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const MIN: usize = 4 << 20;
        const PAGE: usize = 4096;
        const MADV_HUGEPAGE: std::ffi::c_int = 14;
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::ffi::c_int) -> std::ffi::c_int;
        }
        if bytes < MIN {
            return;
        }
        let start = (ptr as usize).div_ceil(PAGE) * PAGE;
        let end = (ptr as usize + bytes) / PAGE * PAGE;
        if end > start {
            // SAFETY: the range lies inside an allocation the caller owns; MADV_HUGEPAGE only
            // changes how the kernel backs it, never its contents.
            unsafe {
                madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_counts_name_the_argument() {
        let e = elements("new_shape", &[usize::MAX, 2]).unwrap_err();
        assert!(e.to_string().starts_with("new_shape:"));
        assert_eq!(elements("x", &[2, 3, 4]).unwrap(), 24);
        assert!(bytes_of::<f32>("x", usize::MAX / 2).is_err());
    }

    #[test]
    fn impossible_allocations_fail_without_aborting() {
        let e = try_zeroed::<f32>("output", isize::MAX as usize / 4).unwrap_err();
        assert!(matches!(e, KernelError::OutOfMemory { what: "output", .. }));
        assert!(try_with_capacity::<u64>("table", usize::MAX / 16).is_err());
        assert_eq!(try_zeroed::<u8>("small", 10).unwrap(), vec![0u8; 10]);
        let caught = std::panic::catch_unwind(|| zeroed::<f64>("deep", isize::MAX as usize / 8)).unwrap_err();
        assert!(matches!(
            payload_to_error(caught),
            Ok(KernelError::OutOfMemory { what: "deep", .. })
        ));
    }
}
