//! resample kernels (to be implemented).
