//! memspy: inspect the heap of a running CPython process from outside, read-only.
//!
//! Layers (see ARCHITECTURE.md): [`process`] (attach, pause, read memory) → [`discovery`] (find the
//! runtime, version, layout) → [`heap`] (walk the GC lists, decode objects) → [`analysis`] (histograms)
//! → [`report`] (tables, JSON); [`commands`] ties them together for the CLI.

pub mod analysis;
pub mod commands;
pub mod cpython;
#[doc(hidden)]
pub mod debug;
pub mod discovery;
pub mod error;
pub mod interrupt;
pub mod memory;
pub mod pause;
pub mod process;
pub mod report;
pub mod walk;

pub use error::{Error, Result};
