//! Stackwave: a GitOps reconciliation agent for Genestack clouds.
//!
//! The binary ([`cli`]) is a thin layer over one module per pipeline stage:
//! [`source`] (Git) → [`render`] (Helm + values + post-render) → [`diff`] (desired vs live)
//! → [`plan`] (waves) → [`reconcile`] (apply in health-gated waves, prune, rollback, drift)
//! → [`record`] (revision store). [`cluster`] is the Kubernetes API layer under them all;
//! [`run`] is the loop `stackwave run` drives and [`control`] the commands that steer it;
//! [`adopt`] takes over a Helm-installed cloud.

pub mod adopt;
pub mod cli;
pub mod cluster;
pub mod component;
pub mod control;
pub mod demo;
pub mod diff;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod render;
pub mod run;
pub mod source;
