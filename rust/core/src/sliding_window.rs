//! sliding_window kernels (to be implemented).
