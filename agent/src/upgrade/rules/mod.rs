//! The upgrade rules, one module per concern. Each reads a [`Context`] and adds
//! [`Finding`]s; the data that drives them lives in `policies/hops.yaml` and
//! `policies/chart-sources.yaml` (compiled in).
//!
//! Rule ids and severities: `chart-downgrade` (error), `chart-rebuild` (info),
//! `chart-source-switch` (error), `skipped-hops` (error), `image-downgrade` (error),
//! `mixed-release` (warning), `irreversible-migration` (warning; info once a backup is
//! recorded), `secret-missing` (error, with a cluster) / `secret-new` (warning), `job-replace`
//! (info), `component-removed` (warning).

pub mod charts;
pub mod hops;
pub mod images;
pub mod objects;
pub mod secrets;
pub mod version;

use super::check::{Context, Finding};
use super::UpgradeError;

/// Runs every rule.
///
/// # Errors
/// [`UpgradeError::Policy`] for a malformed shipped policy file.
pub fn run(ctx: &Context) -> Result<Vec<Finding>, UpgradeError> {
    let mut out = Vec::new();
    charts::check(ctx, &mut out)?;
    hops::check(ctx, &mut out)?;
    images::check(ctx, &mut out);
    secrets::check(ctx, &mut out);
    objects::check(ctx, &mut out);
    Ok(out)
}

/// Parses a shipped policy file (YAML) into `T`.
///
/// # Errors
/// [`UpgradeError::Policy`] naming the file.
pub fn policy<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, UpgradeError> {
    let err = |cause: String| UpgradeError::Policy {
        file: format!("policies/{file}"),
        cause,
    };
    let v = kustomize_rs::yaml::parse_one(text).map_err(|e| err(e.to_string()))?;
    serde_json::from_value(crate::component::to_json(&v)).map_err(|e| err(e.to_string()))
}
