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
