//! The thread pool every kernel runs in.
//!
//! One rayon pool, sized by `set_num_threads`, else `OXUNET_NUM_THREADS`, else all cores.
//! A forked child inherits the pool's bookkeeping but none of its threads, so using it
//! would deadlock: the pool remembers the pid that built it and is rebuilt, silently,
//! when the current pid differs.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::{KernelError, KernelResult};

/// The most threads one pool may have. Far above any real machine's core count, low enough
/// that building the pool cannot exhaust the process's thread or memory limits.
pub const MAX_THREADS: usize = 1024;

struct PoolState {
    pool: Option<Arc<ThreadPool>>,
    owner_pid: u32,
    requested: Option<usize>,
}

static STATE: Mutex<PoolState> = Mutex::new(PoolState {
    pool: None,
    owner_pid: 0,
    requested: None,
});

fn default_threads() -> usize {
    std::env::var("OXUNET_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .min(MAX_THREADS)
}

fn lock() -> std::sync::MutexGuard<'static, PoolState> {
    // A panic while holding the lock cannot leave the state inconsistent (it is only
    // ever replaced whole), so a poisoned lock is safe to reuse.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the number of worker threads (0 = back to the default; at most [`MAX_THREADS`]).
/// Takes effect for the next call.
pub fn set_num_threads(n: usize) -> KernelResult<()> {
    if n > MAX_THREADS {
        return Err(KernelError::invalid(
            "n",
            format!("at most {MAX_THREADS} threads, got {n}"),
        ));
    }
    let mut st = lock();
    st.requested = if n == 0 { None } else { Some(n) };
    st.pool = None;
    Ok(())
}

/// Number of threads the next kernel call will use.
pub fn num_threads() -> usize {
    let st = lock();
    st.requested.unwrap_or_else(default_threads)
}

fn pool() -> KernelResult<Arc<ThreadPool>> {
    let mut st = lock();
    let pid = std::process::id();
    if let Some(p) = &st.pool {
        if st.owner_pid == pid {
            return Ok(Arc::clone(p));
        }
        // Forked child: the parent's workers do not exist here. Leak the stale pool
        // instead of dropping it, because dropping would try to join threads that are gone.
        std::mem::forget(st.pool.take());
    }
    let n = st.requested.unwrap_or_else(default_threads);
    let built = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("oxunet-{i}"))
        .build()
        .map_err(|e| KernelError::invalid("num_threads", format!("cannot start {n} threads: {e}")))?;
    let p = Arc::new(built);
    st.pool = Some(Arc::clone(&p));
    st.owner_pid = pid;
    Ok(p)
}

/// Runs `f` inside oxunet's pool, so rayon calls in `f` use its threads; an error when the
/// pool cannot be started (e.g. the process may not create that many threads).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> KernelResult<R> {
    Ok(pool()?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn pool_honours_requested_size() {
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        let n = install(rayon::current_num_threads).unwrap();
        assert_eq!(n, 3);
        let s: u64 = install(|| (0..1000u64).into_par_iter().sum()).unwrap();
        assert_eq!(s, 499_500);
        assert!(set_num_threads(MAX_THREADS + 1).is_err());
        set_num_threads(0).unwrap();
        assert!(num_threads() >= 1);
    }
}
