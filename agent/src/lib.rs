//! Stackwave: a GitOps reconciliation agent for Genestack clouds.
//!
//! The binary is a thin layer over library crates; each pipeline stage
//! (source → render → diff → plan → apply → record) gets its own module as it lands.
//! Today the render stage's kustomize engine is wired in ([`cli`]).

pub mod cli;
pub mod cluster;
pub mod component;
pub mod demo;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod render;
pub mod run;
pub mod source;
