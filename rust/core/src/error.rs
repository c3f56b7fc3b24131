//! One error type for every kernel. Each variant names the argument at fault so the
//! Python layer can raise an exception that tells the user what to fix.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// A value is out of its allowed range or inconsistent with another argument.
    #[error("{arg}: {msg}")]
    InvalidArgument { arg: &'static str, msg: String },
    /// Wrong dimensionality or shape.
    #[error("{arg}: {msg}")]
    Shape { arg: &'static str, msg: String },
    /// An allocation failed (or would exceed the machine's memory): `what` names the buffer.
    #[error("{what}: cannot allocate {} (not enough memory)", human_bytes(*bytes))]
    OutOfMemory { what: &'static str, bytes: usize },
}

/// `bytes` as "1.5 GiB"; usize::MAX stands for "more than can be addressed".
pub fn human_bytes(bytes: usize) -> String {
    if bytes == usize::MAX {
        return "more bytes than can be addressed".to_string();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

impl KernelError {
    pub fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::InvalidArgument { arg, msg: msg.into() }
    }
    pub fn shape(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::Shape { arg, msg: msg.into() }
    }
}

pub type KernelResult<T> = Result<T, KernelError>;
