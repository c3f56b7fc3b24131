//! oxunet-core: the non-network hot paths of nnU-Net-style segmentation, in pure Rust on
//! ndarray views. No PyO3 here; `rust/py` binds these functions as `oxunet._core`.
//!
//! Arrays are channel-first as in nnU-Net: data `(c, x, y, z)` or `(c, x, y)`.

pub mod components;
pub mod crop;
pub mod error;
pub mod mem;
pub mod parallel;
pub mod resample;
pub mod sampling;
pub mod sliding_window;

pub use error::{KernelError, KernelResult};
