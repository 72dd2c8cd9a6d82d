//! `image-downgrade` (error), `mixed-release` (warning) and `irreversible-migration`
//! (warning): the OpenStack release each image tag carries (`…/nova:2025.1-latest` →
//! 2025.1), read from the components' values files (`images.tags`, layered as Helm layers
//! them) — no render needed.
//!
//! A component's release is the one most of its tagged images carry (ties: the newest), so a
//! generic helper image (`openstack-client:latest`, no release) does not count. A component
//! migrates its database when one of its image keys is a `db_sync` job image.

use crate::upgrade::check::{Context, Finding, Severity};
use crate::upgrade::revision::Revision;
use std::collections::BTreeMap;

/// An OpenStack release: (year, number), e.g. (2025, 1) for 2025.1 "Epoxy".
pub type Release = (u16, u8);

/// The release an image reference's tag names (`YYYY.N` not followed by another digit).
pub fn release_of(image: &str) -> Option<Release> {
    let tail = image.rsplit('/').next().unwrap_or(image);
    let tag = tail.split_once(':')?.1;
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE
        .get_or_init(|| regex::Regex::new(r"(?:^|[^0-9.])(20[0-9]{2})\.([0-9])(?:[^0-9]|$)").ok())
        .as_ref()?;
    let tag = format!("_{tag}");
    let c = re.captures(&tag)?;
    Some((c[1].parse().ok()?, c[2].parse().ok()?))
}

/// `2025.1`.
pub fn show(r: Release) -> String {
    format!("{}.{}", r.0, r.1)
}

/// A component's release: the most common among its images (ties: the newest).
pub fn component_release(tags: &BTreeMap<String, String>) -> Option<Release> {
    let mut n: BTreeMap<Release, usize> = BTreeMap::new();
    for r in tags.values().filter_map(|t| release_of(t)) {
        *n.entry(r).or_default() += 1;
    }
    n.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(r, _)| r)
}

/// Component → release of a revision's enabled components that carry one.
pub fn releases(rev: &Revision) -> BTreeMap<String, Release> {
    rev.cfg
        .components
        .iter()
        .filter_map(|c| component_release(&rev.image_tags(c)).map(|r| (c.clone(), r)))
        .collect()
}

/// Adds the image findings.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) {
    let (from, to) = (&ctx.up.from, &ctx.up.to);
    // A component new in this revision has nothing to go back from.
    for c in to
        .cfg
        .components
        .iter()
        .filter(|c| from.cfg.components.contains(c))
    {
        let (old, new) = (from.image_tags(c), to.image_tags(c));
        let down: Vec<String> = new
            .iter()
            .filter_map(|(k, t)| {
                let (a, b) = (release_of(old.get(k)?)?, release_of(t)?);
                (b < a).then(|| format!("{k} {} → {}", show(a), show(b)))
            })
            .collect();
        if !down.is_empty() {
            out.push(Finding::new(
                "image-downgrade",
                Severity::Error,
                c,
                format!(
                    "{c} images go back an OpenStack release: {}",
                    down.join(", ")
                ),
            ));
        }
    }
    let (old, new) = (releases(from), releases(to));
    if let Some(newest) = new.values().max().copied() {
        let ahead: Vec<&str> = new
            .iter()
            .filter(|(_, r)| **r == newest)
            .map(|(c, _)| c.as_str())
            .collect();
        for (c, r) in new.iter().filter(|(_, r)| **r < newest) {
            out.push(Finding::new(
                "mixed-release",
                Severity::Warning,
                c,
                format!(
                    "{c} stays on OpenStack {} while {} run {}",
                    show(*r),
                    ahead.join(", "),
                    show(newest)
                ),
            ));
        }
    }
    for (c, r) in &new {
        let Some(was) = old.get(c).filter(|was| *was < r) else {
            continue;
        };
        if !to.image_tags(c).keys().any(|k| k.contains("db_sync")) {
            continue;
        }
        let (severity, ask) = match to.upgrade.backups.get(c) {
            Some(b) => (Severity::Info, format!("backup recorded: {b}")),
            None => (
                Severity::Warning,
                format!("take a database backup and record it in stackwave.yaml (`backups: {{{c}: <reference>}}`)"),
            ),
        };
        out.push(Finding::new(
            "irreversible-migration",
            severity,
            c,
            format!(
                "{c} moves {} → {} and its db-sync job migrates the database: a rollback past this revision needs a database backup; {ask}",
                show(*was),
                show(*r)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_from_tags() {
        assert_eq!(
            release_of("ghcr.io/rackerlabs/genestack-images/nova:2025.1-latest"),
            Some((2025, 1))
        );
        assert_eq!(
            release_of("quay.io/airshipit/nova:2024.1-ubuntu_jammy"),
            Some((2024, 1))
        );
        assert_eq!(release_of("ghcr.io/x/openstack-client:latest"), None);
        assert_eq!(release_of("registry:5000/x/y:1.20251.3"), None);
        let tags: BTreeMap<String, String> = [
            ("a", "r/nova:2025.1-latest"),
            ("b", "r/nova:2025.1-latest"),
            ("c", "r/heat:2024.1-latest"),
            ("d", "r/openstack-client:latest"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(component_release(&tags), Some((2025, 1)));
    }
}
