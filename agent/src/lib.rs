//! Stackwave: a GitOps reconciliation agent for Genestack clouds.
//!
//! The binary ([`cli`]) is a thin layer over one module per pipeline stage:
//! [`source`] (Git) → [`render`] (Helm + values + post-render) → [`diff`] (desired vs live)
//! → [`plan`] (waves) → [`reconcile`] (apply in health-gated waves, prune, rollback, drift)
//! → [`record`] (revision store). [`cluster`] is the Kubernetes API layer under them all;
//! [`run`] is the loop `stackwave run` drives and [`control`] the commands that steer it;
//! [`upgrade`] previews, checks and plans a change between two commits (`--from --to`).
//! [`adopt`] takes over a Helm-installed cloud.

pub mod adopt;
pub mod apply;
pub mod auto;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod component;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod demo_cloud;
pub mod diff;
pub mod digest;
pub mod fetch;
pub mod init;
pub mod keyring;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod rbac;
pub mod reconcile;
pub mod record;
pub mod render;
pub mod run;
pub mod source;
pub mod upgrade;
