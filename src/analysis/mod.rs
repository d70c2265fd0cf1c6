//! Analysis: per-type histograms of a walk, and the report they make.

pub mod diff;
pub mod dominators;
pub mod forest;
pub mod growth;
pub mod histogram;
pub mod paths;
pub mod why;

pub use histogram::{Histogram, Report, TypeRow};
