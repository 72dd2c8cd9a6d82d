//! Version precedence for chart pins and operator versions: Semantic Versioning 2.0.0 §11
//! (<https://semver.org/#spec-item-11>: major, minor, patch numerically, a pre-release below
//! its release, **build metadata ignored**), with a leading `v` allowed (`v1.19.5`) and
//! openstack-helm's `YYYY.N.PATCH+sha` pins read as versions with build metadata.

use std::cmp::Ordering;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(semver::Version);

impl Version {
    /// Parses `v1.2.3`, `1.2.3-rc.1`, `2026.1.8+a2a343968`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        semver::Version::parse(s.strip_prefix('v').unwrap_or(s))
            .ok()
            .map(Version)
    }

    /// Precedence (build metadata ignored).
    pub fn precedence(&self, other: &Version) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        (a.major, a.minor, a.patch)
            .cmp(&(b.major, b.minor, b.patch))
            .then_with(|| match (a.pre.is_empty(), b.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.pre.cmp(&b.pre),
            })
    }

    /// The build metadata (`a2a343968`), empty when none.
    pub fn build(&self) -> &str {
        self.0.build.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        Version::parse(a)
            .unwrap()
            .precedence(&Version::parse(b).unwrap())
    }

    #[test]
    fn precedence_follows_semver_and_ignores_build() {
        assert_eq!(cmp("1.10.2", "1.9.1"), Ordering::Greater);
        assert_eq!(cmp("v0.15.2", "0.13.12"), Ordering::Greater);
        assert_eq!(
            cmp("2025.1.4+ed289c1cd", "2026.1.8+a2a343968"),
            Ordering::Less
        );
        assert_eq!(cmp("2026.1.8+aaa", "2026.1.8+bbb"), Ordering::Equal);
        assert_eq!(cmp("1.0.0-rc.1", "1.0.0"), Ordering::Less);
        assert_eq!(cmp("1.0.0-alpha.2", "1.0.0-alpha.10"), Ordering::Less);
        assert!(Version::parse("latest").is_none());
    }
}
