//! sampling kernels (to be implemented).
