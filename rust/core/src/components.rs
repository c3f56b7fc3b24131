//! components kernels (to be implemented).
