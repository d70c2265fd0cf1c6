//! Analysis: per-type histograms of a walk, and the report they make.

pub mod histogram;

pub use histogram::{Histogram, Report, TypeRow};
