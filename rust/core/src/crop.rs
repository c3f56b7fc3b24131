//! crop kernels (to be implemented).
