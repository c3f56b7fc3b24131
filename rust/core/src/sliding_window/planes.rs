//! The accumulator storage: one zeroed allocation for all planes of the first axis (so the
//! allocator hands out fresh, lazily zeroed pages, advised as huge pages on Linux), with one
//! lock per plane (striped locking: concurrent adds only wait on the planes they share).

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, MutexGuard};

use super::rows::AccElem;
use crate::{KernelError, KernelResult};

/// A raw, fixed-size, zero-initialised buffer.
struct RawBuf<A> {
    ptr: *mut A,
    len: usize,
    cap: usize,
}

impl<A: AccElem> RawBuf<A> {
    fn zeros(what: &'static str, len: usize) -> KernelResult<Self> {
        // fallible, zeroed pages, advised as huge pages (crate::mem)
        let mut v = ManuallyDrop::new(crate::mem::try_zeroed::<A>(what, len)?);
        Ok(RawBuf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        })
    }
}

impl<A> Drop for RawBuf<A> {
    fn drop(&mut self) {
        // SAFETY: ptr/len/cap come from a Vec<A> we took apart and never shared.
        unsafe { drop(Vec::from_raw_parts(self.ptr, self.len, self.cap)) }
    }
}

pub(crate) use crate::mem::advise_huge_pages;

/// `slots` planes, each with `C × Y × Z` sums and `Y × Z` weights.
pub(crate) struct Planes<A> {
    acc: RawBuf<A>,
    w: RawBuf<A>,
    acc_len: usize,
    w_len: usize,
    locks: Vec<Mutex<()>>,
}

// SAFETY: plane memory is only reached through `lock`, which holds that plane's mutex for
// the lifetime of the returned slices; distinct planes are disjoint.
unsafe impl<A: Send> Send for Planes<A> {}
// SAFETY: as above.
unsafe impl<A: Send> Sync for Planes<A> {}

/// Exclusive access to one plane while it is alive.
pub(crate) struct PlaneMut<'a, A> {
    _guard: MutexGuard<'a, ()>,
    /// `(C, Y, Z)`
    pub acc: &'a mut [A],
    /// `(Y, Z)`
    pub w: &'a mut [A],
    _p: PhantomData<&'a mut A>,
}

impl<A: AccElem> Planes<A> {
    pub fn new(slots: usize, acc_len: usize, w_len: usize) -> KernelResult<Self> {
        let count = |len: usize| {
            slots.checked_mul(len).ok_or(KernelError::OutOfMemory {
                what: "aggregator planes",
                bytes: usize::MAX,
            })
        };
        let mut locks = crate::mem::try_with_capacity("aggregator planes", slots)?;
        locks.extend((0..slots).map(|_| Mutex::new(())));
        Ok(Planes {
            acc: RawBuf::zeros("aggregator sums", count(acc_len)?)?,
            w: RawBuf::zeros("aggregator weights", count(w_len)?)?,
            acc_len,
            w_len,
            locks,
        })
    }

    pub fn lock(&self, slot: usize) -> PlaneMut<'_, A> {
        let guard = self.locks[slot].lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!((slot + 1) * self.acc_len <= self.acc.len && (slot + 1) * self.w_len <= self.w.len);
        // SAFETY: in bounds (slot < number of locks); exclusive while the guard lives.
        let (acc, w) = unsafe {
            (
                std::slice::from_raw_parts_mut(self.acc.ptr.add(slot * self.acc_len), self.acc_len),
                std::slice::from_raw_parts_mut(self.w.ptr.add(slot * self.w_len), self.w_len),
            )
        };
        PlaneMut {
            _guard: guard,
            acc,
            w,
            _p: PhantomData,
        }
    }
}
