//! memspy: inspect the heap of a running CPython process from outside, read-only.
//!
//! Layers, each importing only those before it (see ARCHITECTURE.md): [`memory`] (where bytes come
//! from) → [`process`] (the target: open, pause, resources) → [`cpython`] (decode objects given a
//! layout) → [`discovery`] (find the runtime, pick the layout) → [`pause`] (one consistent read) →
//! [`walk`] (the heap walks) → [`analysis`] (histograms, growth, diffs) → [`store`] (the dump file) →
//! [`report`] (tables, JSON,
//! the live view) → [`commands`] (the CLI's subcommands). [`error`] and [`interrupt`] serve them all.

pub mod analysis;
pub mod commands;
pub mod cpython;
#[doc(hidden)]
pub mod debug;
pub mod discovery;
pub mod error;
pub mod interrupt;
pub mod memory;
pub mod native;
pub mod pause;
pub mod process;
pub mod report;
pub mod store;
pub mod walk;

pub use error::{Error, Result};
