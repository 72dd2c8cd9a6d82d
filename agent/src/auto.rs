//! `components: auto` in `stackwave.yaml`: the components Genestack's setup scripts install,
//! decided as data. Each catalog entry's `auto` rule says whether it belongs:
//! `always` (what `bin/setup-infrastructure.sh` installs unconditionally, and keystone, which
//! `bin/setup-openstack.sh` installs first whatever the file says), `enabled` (installed when
//! `openstack-components.yaml` enables it: `setup-openstack.sh`'s `is_component_enabled`,
//! a case-insensitive `grep "^[[:space:]]*<name>:[[:space:]]*true"`), or absent (never).
//! The order comes from the entries' waves (see [`crate::plan`]).

use crate::component::{AutoRule, Catalog};
use std::path::Path;

/// The word that selects the automatic set.
pub const AUTO: &str = "auto";

/// Whether `openstack-components.yaml` enables a component, as `is_component_enabled`
/// decides: some line, after leading blanks, is `<name>:` then blanks then `true`
/// (ASCII case-insensitive; anything may follow).
pub fn enabled_in(text: &str, name: &str) -> bool {
    let want = format!("{name}:").to_ascii_lowercase();
    text.lines().any(|l| {
        let l = l.trim_start_matches([' ', '\t']).to_ascii_lowercase();
        l.strip_prefix(&want)
            .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with("true"))
    })
}

/// The automatic component set, in catalog (name) order: every `always` entry, and every
/// `enabled` entry that `openstack_components` (the file's text; `None` when there is
/// none) enables.
pub fn components(catalog: &Catalog, openstack_components: Option<&str>) -> Vec<String> {
    catalog
        .components
        .values()
        .filter(|c| match c.auto {
            Some(AutoRule::Always) => true,
            Some(AutoRule::Enabled) => openstack_components.is_some_and(|t| enabled_in(t, &c.name)),
            None => false,
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Resolves `components: auto` for a checkout: `openstack-components.yaml` is read from the
/// repository root (it mirrors `/etc/genestack`), else from the Genestack base directory.
pub fn resolve(catalog: &Catalog, checkout: &Path, base: Option<&Path>) -> Vec<String> {
    let text = std::fs::read_to_string(checkout.join("openstack-components.yaml"))
        .ok()
        .or_else(|| {
            base.and_then(|b| std::fs::read_to_string(b.join("openstack-components.yaml")).ok())
        });
    components(catalog, text.as_deref())
}

/// `components:` left out of `stackwave.yaml`: the automatic set, as `components: auto`
/// (the "may be omitted or `auto`"); the one-item list `["auto"]` until [`resolve`]
/// replaces it. An explicit `components: []` still enables none.
pub fn omitted() -> Vec<String> {
    vec![AUTO.to_string()]
}

/// Deserialises `components:`: a list of names, or the word `auto`, or no value
/// (`components:` alone, YAML null, read as left out: [`omitted`]); the word and the null are
/// kept as the one-item list `["auto"]` until [`resolve`] replaces it.
///
/// # Errors
/// Any other string, or a non-list.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Spec {
        Word(String),
        List(Vec<String>),
    }
    match <Option<Spec> as serde::Deserialize>::deserialize(d)? {
        None => Ok(omitted()),
        Some(Spec::List(l)) => Ok(l),
        Some(Spec::Word(w)) if w == AUTO => Ok(omitted()),
        Some(Spec::Word(w)) => Err(serde::de::Error::custom(format!(
            "components: expected a list of component names or `auto`, got {w:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_follows_the_scripts_grep() {
        let t =
            "components:\n  keystone: true\n  Glance: TRUE # yes\n  heat: false\n\tnova:  true\n";
        assert!(enabled_in(t, "keystone"));
        assert!(enabled_in(t, "glance"));
        assert!(enabled_in(t, "nova"));
        assert!(!enabled_in(t, "heat"));
        assert!(!enabled_in(t, "cinder"));
    }
}
