//! Patch sampling for training (nnU-Net §9): class locations drawn at preprocessing time,
//! and cropping a (possibly out-of-image) patch box with constant padding.
//!
//! The per-sample box logic (`sample_patch_boxes`) is a handful of integer operations per
//! sample and lives in Python (`oxunet.kernels.sampling`); only the two passes over whole
//! volumes/patches are here.

mod crop_pad;
mod locations;
pub mod rng;

pub use crop_pad::{crop_and_pad, crop_and_pad_into, crop_shape};
pub use locations::{num_samples, sample_class_locations, Label};
