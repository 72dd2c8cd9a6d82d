//! The effective component catalog of a desired-state repository.
//!
//! The built-in catalog (`components/*.yaml`, compiled in; see [`crate::component`]) describes
//! the install scripts of the Genestack release it was transcribed from
//! ([`GenestackRelease::builtin`]). A repository may carry a `components/` directory of its own
//! (`components/<name>.yaml`, the same shape): an entry there replaces the built-in entry of
//! that name or adds a new one, so a repository pinned to an older or newer Genestack base can
//! describe that release's scripts, reviewed in pull requests like any other change.
//!
//! Every entry, built-in or carried, is validated the same way ([`validate`]); errors name the
//! file. [`Effective`] keeps where each entry comes from, for `stackwave catalog`.

use crate::component::{self, Catalog, CatalogError, Component, ComponentKind};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory of a repository that holds its own catalog entries.
pub const REPO_DIR: &str = "components";

/// Where the Genestack release the built-in catalog was transcribed from lives
/// (`components/release/genestack.yaml`).
const RELEASE: &str = include_str!("../../components/release/genestack.yaml");

/// The Genestack release a catalog describes: its public Git repository and the commit (or tag)
/// its install scripts were read at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GenestackRelease {
    /// Public Git repository URL.
    pub url: String,
    /// Tag or commit.
    pub r#ref: String,
}

impl GenestackRelease {
    /// The release the built-in catalog was transcribed from.
    ///
    /// # Errors
    /// Only if the shipped file is malformed (a broken build).
    pub fn builtin() -> Result<GenestackRelease, CatalogError> {
        let file = "components/release/genestack.yaml";
        let v = kustomize_rs::yaml::parse_one(RELEASE).map_err(|e| CatalogError {
            file: file.into(),
            cause: e.to_string(),
        })?;
        serde_json::from_value(component::to_json(&v)).map_err(|e| CatalogError {
            file: file.into(),
            cause: e.to_string(),
        })
    }
}

/// Where an entry of the effective catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Origin {
    /// Compiled into the binary.
    Builtin {
        /// The file in Stackwave's `components/`.
        file: String,
    },
    /// Carried by the repository.
    Repo {
        /// The file in the repository's `components/` (as given: relative to the repository
        /// when the repository path was).
        file: PathBuf,
        /// The built-in file it replaces, if any.
        replaces: Option<String>,
    },
}

/// One entry of the effective catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// The component.
    pub component: Component,
    /// Where it comes from.
    pub origin: Origin,
}

/// The effective catalog: built-in entries with the repository's laid over them, by name.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Effective {
    /// Entries by component name.
    pub entries: BTreeMap<String, Entry>,
}

/// Why a catalog entry (built-in or carried by a repository) was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogLoadError {
    /// The file or directory cannot be read.
    #[error("component catalog {file}: {source}")]
    Read {
        /// The file or directory.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML or a mistyped field.
    #[error(transparent)]
    Parse(#[from] CatalogError),
    /// A field the catalog does not know (a typo would otherwise be ignored silently).
    #[error("component catalog {file}: unknown field `{field}`")]
    UnknownField {
        /// The file.
        file: String,
        /// Dotted path of the field (`chart.verison`, `bindings.0.secrte`).
        field: String,
    },
    /// `components/<name>.yaml` must describe component `<name>`.
    #[error("component catalog {file}: describes component `{name}`, but the file is named for `{stem}` (components/<name>.yaml)")]
    NameMismatch {
        /// The file.
        file: String,
        /// The `name:` in it.
        name: String,
        /// The file's name without `.yaml`.
        stem: String,
    },
    /// A field's value is unusable.
    #[error("component catalog {file}: {field}: {cause}")]
    Invalid {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// What is wrong.
        cause: String,
    },
    /// A reference to a component the effective catalog does not have.
    #[error("component catalog {file}: {field} names component `{missing}`, which is in neither the built-in catalog nor the repository's components/")]
    UnknownComponent {
        /// The file.
        file: String,
        /// The field (`dependsOn`, `vars.<name>.valuesOf`).
        field: String,
        /// The name.
        missing: String,
    },
}

/// The fields of `given` that `known` (the same document, parsed into the typed entry and
/// serialised back, so holding every field the type has) lacks, as dotted paths.
fn unknown_fields(given: &Json, known: &Json, at: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (given, known) {
        (Json::Object(g), Json::Object(k)) => {
            for (key, gv) in g {
                match k.get(key) {
                    Some(kv) => unknown_fields(gv, kv, &join(key), out),
                    None => out.push(join(key)),
                }
            }
        }
        (Json::Array(g), Json::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_fields(gv, kv, &join(&i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// Parses and checks one catalog file on its own (references to other components are checked
/// by [`validate`] once the whole catalog is known).
///
/// # Errors
/// [`CatalogLoadError`] naming `file`.
pub fn parse_file(text: &str, file: &str) -> Result<Component, CatalogLoadError> {
    let given = kustomize_rs::yaml::parse_one(text)
        .map(|v| component::to_json(&v))
        .map_err(|e| CatalogError {
            file: file.into(),
            cause: e.to_string(),
        })?;
    // The entry as the catalog reads it: quirks it opts out of patched in
    // ([`component::apply_intended`]).
    let mut given = given;
    component::apply_intended(&mut given).map_err(|e| CatalogError {
        file: file.into(),
        cause: e.to_string(),
    })?;
    // The error names the field (`wave: invalid type: ...`).
    let c: Component =
        serde_path_to_error::deserialize(given.clone()).map_err(|e| CatalogError {
            file: file.into(),
            cause: match e.path().to_string() {
                p if p == "." => e.inner().to_string(),
                p => format!("{p}: {}", e.inner()),
            },
        })?;
    let known = serde_json::to_value(&c).map_err(|e| CatalogError {
        file: file.into(),
        cause: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&given, &known, "", &mut unknown);
    if let Some(field) = unknown.into_iter().next() {
        return Err(CatalogLoadError::UnknownField {
            file: file.into(),
            field,
        });
    }
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem != c.name {
        return Err(CatalogLoadError::NameMismatch {
            file: file.into(),
            name: c.name.clone(),
            stem,
        });
    }
    let invalid = |field: &str, cause: &str| {
        Err(CatalogLoadError::Invalid {
            file: file.into(),
            field: field.into(),
            cause: cause.into(),
        })
    };
    let mut required = vec![("release.name", &c.release.name)];
    match c.kind {
        ComponentKind::Helm => {
            required.push(("release.namespace", &c.release.namespace));
            required.push(("chart.name", &c.chart.name));
            required.push(("values.dir", &c.values.dir));
        }
        ComponentKind::Kustomize => {
            if c.kustomize
                .as_ref()
                .is_none_or(|k| k.path.trim().is_empty())
            {
                return invalid(
                    "kustomize.path",
                    "a `kind: kustomize` entry names its directory",
                );
            }
        }
        ComponentKind::Manifests => {
            if c.manifests.is_empty() {
                return invalid("manifests", "a `kind: manifests` entry lists its files");
            }
        }
    }
    for (field, v) in required {
        if v.trim().is_empty() {
            return invalid(field, "must not be empty");
        }
    }
    let sources = [
        c.chart.repo.is_some(),
        c.chart.oci.is_some(),
        c.chart.git.is_some(),
        c.chart.genestack_path.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return invalid(
            "chart",
            "give at most one of `repo`, `oci`, `git` and `genestackPath` (where the chart comes from)",
        );
    }
    if let Some(oci) = &c.chart.oci {
        if !oci.starts_with("oci://") {
            return invalid("chart.oci", "must start with oci://");
        }
    }
    for (i, b) in c.bindings.iter().enumerate() {
        if b.path.trim().is_empty() {
            return invalid(&format!("bindings.{i}.path"), "must not be empty");
        }
        if b.secret.is_some() != b.key.is_some() {
            return invalid(
                &format!("bindings.{i}"),
                "`secret` and `key` go together (the Secret and the key of its data)",
            );
        }
        if b.secret.is_none() && b.object.is_none() && b.nodes.is_none() && b.template.is_none() {
            return invalid(
                &format!("bindings.{i}"),
                "binds nothing: give `secret` + `key`, an `object`, `nodes`, or a `template`",
            );
        }
    }
    Ok(c)
}

/// Checks the references between entries: every `dependsOn` and every variable's `valuesOf`
/// names a component of `catalog`.
///
/// # Errors
/// [`CatalogLoadError::UnknownComponent`] naming the file of the entry that refers.
pub fn validate(catalog: &Effective) -> Result<(), CatalogLoadError> {
    for e in catalog.entries.values() {
        let file = e.origin.file();
        for d in &e.component.depends_on {
            if !catalog.entries.contains_key(d) {
                return Err(CatalogLoadError::UnknownComponent {
                    file,
                    field: "dependsOn".into(),
                    missing: d.clone(),
                });
            }
        }
        for (name, v) in &e.component.vars {
            if !catalog.entries.contains_key(&v.values_of) {
                return Err(CatalogLoadError::UnknownComponent {
                    file,
                    field: format!("vars.{name}.valuesOf"),
                    missing: v.values_of.clone(),
                });
            }
        }
    }
    Ok(())
}

impl Origin {
    /// The file, as shown in errors and listings.
    pub fn file(&self) -> String {
        match self {
            Origin::Builtin { file } => file.clone(),
            Origin::Repo { file, .. } => file.display().to_string(),
        }
    }
}

impl Effective {
    /// The built-in catalog alone.
    ///
    /// # Errors
    /// A malformed shipped file (a broken build).
    pub fn builtin() -> Result<Effective, CatalogLoadError> {
        let mut out = Effective::default();
        for (file, text) in component::BUILTIN {
            let c = parse_file(text, file)?;
            out.entries.insert(
                c.name.clone(),
                Entry {
                    component: c,
                    origin: Origin::Builtin {
                        file: (*file).to_string(),
                    },
                },
            );
        }
        Ok(out)
    }

    /// Lays the `*.yaml` files of `dir` over the entries (same name replaces), in file-name
    /// order. A missing directory adds nothing.
    ///
    /// # Errors
    /// Unreadable or invalid files, named.
    pub fn overlay(&mut self, dir: &Path) -> Result<(), CatalogLoadError> {
        if !dir.exists() {
            return Ok(());
        }
        let read = |p: &Path, source| CatalogLoadError::Read {
            file: p.display().to_string(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| read(dir, e)))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"));
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| read(&f, e))?;
            let c = parse_file(&text, &f.display().to_string())?;
            let replaces = match self.entries.get(&c.name).map(|e| &e.origin) {
                Some(Origin::Builtin { file }) => Some(file.clone()),
                Some(Origin::Repo { replaces, .. }) => replaces.clone(),
                None => None,
            };
            self.entries.insert(
                c.name.clone(),
                Entry {
                    component: c,
                    origin: Origin::Repo { file: f, replaces },
                },
            );
        }
        Ok(())
    }

    /// The effective catalog of a repository checkout: the built-in entries with the
    /// checkout's `components/*.yaml` laid over them, validated.
    ///
    /// # Errors
    /// [`CatalogLoadError`] naming the file.
    pub fn of_repo(repo: &Path) -> Result<Effective, CatalogLoadError> {
        let mut e = Effective::builtin()?;
        e.overlay(&repo.join(REPO_DIR))?;
        validate(&e)?;
        Ok(e)
    }

    /// The components alone, as the render and plan stages take them.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            components: self
                .entries
                .iter()
                .map(|(k, e)| (k.clone(), e.component.clone()))
                .collect(),
        }
    }

    /// A table for `stackwave catalog`: name, kind, wave, namespace, what it renders (chart
    /// and repository, kustomize directory, manifest files) and where the entry comes from.
    pub fn text(&self) -> String {
        let mut rows = vec![[
            "COMPONENT".to_string(),
            "KIND".into(),
            "WAVE".into(),
            "NAMESPACE".into(),
            "SOURCE".into(),
            "FROM".into(),
        ]];
        for (name, e) in &self.entries {
            let c = &e.component;
            let chart = match c.kind {
                ComponentKind::Kustomize => c
                    .kustomize
                    .as_ref()
                    .map(|k| format!("kustomize {}", k.path))
                    .unwrap_or_default(),
                ComponentKind::Manifests => format!("manifests {}", c.manifests.join(", ")),
                ComponentKind::Helm => c
                    .chart
                    .repo
                    .clone()
                    .or_else(|| c.chart.oci.clone())
                    .or_else(|| c.chart.git.as_ref().map(|g| format!("git {}", g.url)))
                    .or_else(|| {
                        c.chart
                            .genestack_path
                            .as_ref()
                            .map(|p| format!("genestack {p}"))
                    })
                    .map_or_else(
                        || c.chart.name.clone(),
                        |s| format!("{} ({s})", c.chart.name),
                    ),
            };
            let from = match &e.origin {
                Origin::Builtin { file } => format!("built-in {file}"),
                Origin::Repo {
                    file,
                    replaces: Some(b),
                } => format!("repo {} (replaces built-in {b})", file.display()),
                Origin::Repo {
                    file,
                    replaces: None,
                } => format!("repo {}", file.display()),
            };
            rows.push([
                name.clone(),
                serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                c.wave.to_string(),
                c.release.namespace.clone(),
                chart,
                from,
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                let mut line: String = r
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}  "))
                    .collect();
                line.truncate(line.trim_end().len());
                line.push('\n');
                line
            })
            .collect()
    }
}

/// The catalog the render and plan stages use for a checkout: [`Effective::of_repo`] without
/// the provenance, starting from `builtin` (which may itself carry `--catalog` overlays).
///
/// # Errors
/// [`CatalogLoadError`] naming the repository file.
pub fn for_checkout(builtin: &Catalog, checkout: &Path) -> Result<Catalog, CatalogLoadError> {
    let dir = checkout.join(REPO_DIR);
    if !dir.exists() {
        return Ok(builtin.clone());
    }
    let mut e = Effective {
        entries: builtin
            .components
            .iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    Entry {
                        component: c.clone(),
                        origin: Origin::Builtin {
                            file: format!("components/{k}.yaml"),
                        },
                    },
                )
            })
            .collect(),
    };
    e.overlay(&dir)?;
    validate(&e)?;
    Ok(e.catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let head = "name: x\nchart: {name: x}\nvalues: {dir: x}\n";
        let text = format!("{head}release: {{name: x, namespace: n, nmespace: typo}}\n");
        let e = parse_file(&text, "components/x.yaml").unwrap_err();
        assert!(
            matches!(&e, CatalogLoadError::UnknownField { field, .. } if field == "release.nmespace"),
            "{e}"
        );
        let text = format!(
            "{head}release: {{name: x, namespace: n}}\nbindings:\n  - {{path: a, secret: s, key: k, kye: typo}}\n"
        );
        let e = parse_file(&text, "components/x.yaml").unwrap_err();
        assert!(
            e.to_string()
                .contains("components/x.yaml: unknown field `bindings.0.kye`"),
            "{e}"
        );
        let text = format!("{head}release: {{name: x, namespace: n}}\n");
        assert_eq!(parse_file(&text, "components/x.yaml").unwrap().name, "x");
    }

    #[test]
    fn the_release_pin_is_the_corpus_commit() {
        let r = GenestackRelease::builtin().unwrap();
        assert_eq!(r.url, "https://github.com/rackerlabs/genestack");
        assert!(!r.r#ref.is_empty());
    }
}
