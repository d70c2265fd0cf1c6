//! Analysis: per-type histograms of a walk, and the report they make.

pub mod diff;
pub mod growth;
pub mod histogram;

pub use histogram::{Histogram, Report, TypeRow};
