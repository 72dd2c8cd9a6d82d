//! Field specs (which fields of which kinds a transformer touches), the default tables, and
//! the traversal kustomize does along a spec's path (`api/filters/fieldspec/fieldspec.go`,
//! `api/internal/plugins/builtinconfig/transformerconfig.go`).
//!
//! The default tables are data: `data/fieldspecs/*.yaml`, derived from
//! `api/internal/konfig/builtinpluginconsts` by `data/derive.py`, compiled in by `build.rs`.

use crate::resource::Gvk;
use crate::yaml::Value;
use crate::Error;

/// One field spec: a GVK selector, a `/`-separated path, and whether to create the field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Which resources the spec applies to.
    pub gvk: Gvk,
    /// Path of field names; `\/` escapes a slash; `name[]` marks a sequence.
    pub path: String,
    /// Create the field (and missing parents) when absent.
    pub create: bool,
}

/// A name-reference rule: fields (`referrers`) that hold the name of a `target` kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NameBackRef {
    /// The referred-to type.
    pub target: Gvk,
    /// Where referrers hold its name.
    pub referrers: Vec<FieldSpec>,
}

/// The transformer configuration: default tables plus any `configurations:` and CRD specs.
#[derive(Clone, Debug, Default)]
pub struct TransformerConfig {
    /// `namePrefix` fields.
    pub name_prefix: Vec<FieldSpec>,
    /// `nameSuffix` fields.
    pub name_suffix: Vec<FieldSpec>,
    /// `namespace` fields.
    pub namespace: Vec<FieldSpec>,
    /// `commonLabels` fields.
    pub common_labels: Vec<FieldSpec>,
    /// `commonAnnotations` fields.
    pub common_annotations: Vec<FieldSpec>,
    /// `labels[].includeTemplates` fields.
    pub template_labels: Vec<FieldSpec>,
    /// Extra fields for every `labels` entry (`configurations:` key `labels`).
    pub labels: Vec<FieldSpec>,
    /// `images` fields.
    pub images: Vec<FieldSpec>,
    /// `replicas` fields.
    pub replicas: Vec<FieldSpec>,
    /// `vars` reference fields.
    pub var_reference: Vec<FieldSpec>,
    /// Name reference rules.
    pub name_reference: Vec<NameBackRef>,
}

fn from_table(rows: &[crate::tables::Spec]) -> Vec<FieldSpec> {
    rows.iter()
        .map(|r| FieldSpec {
            gvk: Gvk {
                group: r.group.into(),
                version: r.version.into(),
                kind: r.kind.into(),
            },
            path: r.path.into(),
            create: r.create,
        })
        .collect()
}

impl TransformerConfig {
    /// The builtin default tables (compiled in from `data/fieldspecs`).
    ///
    /// # Errors
    /// Never today; kept fallible for configurable defaults.
    pub fn defaults() -> Result<TransformerConfig, Error> {
        Ok((*Self::shared_defaults()?).clone())
    }

    /// The default configuration, built once and shared (see [`TransformerConfig::defaults`]).
    ///
    /// # Errors
    /// As [`TransformerConfig::defaults`].
    pub fn shared_defaults() -> Result<std::sync::Arc<TransformerConfig>, Error> {
        static DEFAULTS: std::sync::OnceLock<std::sync::Arc<TransformerConfig>> =
            std::sync::OnceLock::new();
        Ok(DEFAULTS
            .get_or_init(|| std::sync::Arc::new(Self::build_defaults()))
            .clone())
    }

    fn build_defaults() -> TransformerConfig {
        let t = |k: &str| {
            crate::tables::lookup_unsorted(crate::tables::TABLES, k)
                .map(from_table)
                .unwrap_or_default()
        };
        TransformerConfig {
            name_prefix: t("namePrefix"),
            name_suffix: t("nameSuffix"),
            namespace: t("namespace"),
            common_labels: t("commonLabels"),
            common_annotations: t("commonAnnotations"),
            template_labels: t("templateLabels"),
            images: t("images"),
            replicas: t("replicas"),
            var_reference: t("varReference"),
            labels: Vec::new(),
            name_reference: crate::tables::NAME_REFERENCE
                .iter()
                .map(|(g, v, k, specs)| NameBackRef {
                    target: Gvk {
                        group: (*g).into(),
                        version: (*v).into(),
                        kind: (*k).into(),
                    },
                    referrers: from_table(specs),
                })
                .collect(),
        }
    }

    /// Reads a `configurations:` file's content.
    ///
    /// # Errors
    /// When a spec is not a mapping or has fields of the wrong type.
    pub fn from_value(v: &Value, origin: &str) -> Result<TransformerConfig, Error> {
        let mut tc = TransformerConfig::default();
        let get = |k: &str| parse_specs(v.get(k), &format!("{origin}: {k}"));
        tc.name_prefix = get("namePrefix")?;
        tc.name_suffix = get("nameSuffix")?;
        tc.namespace = get("namespace")?;
        tc.common_labels = get("commonLabels")?;
        tc.common_annotations = get("commonAnnotations")?;
        tc.labels = get("labels")?;
        tc.images = get("images")?;
        tc.replicas = get("replicas")?;
        tc.var_reference = get("varReference")?;
        if let Some(Value::Seq(items)) = v.get("nameReference") {
            for it in items {
                tc.name_reference.push(NameBackRef {
                    target: gvk_of(it),
                    referrers: parse_specs(
                        it.get("fieldSpecs"),
                        &format!("{origin}: nameReference"),
                    )?,
                });
            }
        }
        Ok(tc)
    }

    /// Appends another config's specs, skipping exact duplicates (`TransformerConfig.Merge`).
    pub fn merge(&mut self, o: &TransformerConfig) {
        // A set lookup, not `Vec::contains`: a tree of kustomizations merges each
        // sub-build's full config (hundreds of default specs) into its parent's.
        fn add(dst: &mut Vec<FieldSpec>, src: &[FieldSpec]) {
            if src.is_empty() || dst.as_slice() == src {
                return;
            }
            let have: std::collections::HashSet<&FieldSpec> = dst.iter().collect();
            let mut seen = std::collections::HashSet::new();
            let new: Vec<FieldSpec> = src
                .iter()
                .filter(|fs| !have.contains(fs) && seen.insert(*fs))
                .cloned()
                .collect();
            dst.extend(new);
        }
        add(&mut self.name_prefix, &o.name_prefix);
        add(&mut self.name_suffix, &o.name_suffix);
        add(&mut self.namespace, &o.namespace);
        add(&mut self.common_labels, &o.common_labels);
        add(&mut self.common_annotations, &o.common_annotations);
        add(&mut self.template_labels, &o.template_labels);
        add(&mut self.labels, &o.labels);
        add(&mut self.images, &o.images);
        add(&mut self.replicas, &o.replicas);
        add(&mut self.var_reference, &o.var_reference);
        for br in &o.name_reference {
            match self
                .name_reference
                .iter_mut()
                .find(|b| b.target == br.target)
            {
                Some(b) => add(&mut b.referrers, &br.referrers),
                None => self.name_reference.push(br.clone()),
            }
        }
    }
}

/// Reads `group`/`version`/`kind` keys of a mapping.
pub fn gvk_of(v: &Value) -> Gvk {
    let s = |k: &str| v.get(k).and_then(Value::scalar_string).unwrap_or_default();
    Gvk {
        group: s("group"),
        version: s("version"),
        kind: s("kind"),
    }
}

/// Parses a list of field specs.
///
/// # Errors
/// When the list or an entry has the wrong shape.
pub fn parse_specs(v: Option<&Value>, origin: &str) -> Result<Vec<FieldSpec>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|it| match it {
                Value::Map(_) => Ok(FieldSpec {
                    gvk: gvk_of(it),
                    path: it
                        .get("path")
                        .and_then(Value::scalar_string)
                        .unwrap_or_default(),
                    create: matches!(it.get("create"), Some(Value::Bool(true))),
                }),
                other => Err(Error::field(
                    origin,
                    format!(
                        "{origin}: field spec must be a mapping, got {}",
                        other.kind_name()
                    ),
                )),
            })
            .collect(),
        Some(other) => Err(Error::field(
            origin,
            format!(
                "{origin}: expected a list of field specs, got {}",
                other.kind_name()
            ),
        )),
    }
}

/// Splits a field-spec path on `/`, honouring `\/` escapes (`utils.PathSplitter`).
pub fn split_path(path: &str) -> Vec<String> {
    let mut res: Vec<String> = Vec::new();
    for (i, part) in path.split('/').enumerate() {
        if i > 0 {
            if let Some(last) = res.last_mut() {
                if last.ends_with('\\') {
                    last.pop();
                    last.push('/');
                    last.push_str(part);
                    continue;
                }
            }
        }
        res.push(part.to_string());
    }
    res
}

/// What to create at the end of a path when the spec says `create: true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateKind {
    /// Never create.
    None,
    /// Create an empty string.
    Scalar,
    /// Create an empty mapping.
    Map,
}

/// Visits every node at `fs.path` in `obj` (through sequences) and calls `set` on it,
/// creating missing fields when `fs.create` and `kind` allow it.
///
/// # Errors
/// When a scalar sits where the path needs a mapping or sequence, or `set` fails.
pub fn apply(
    obj: &mut Value,
    fs: &FieldSpec,
    kind: CreateKind,
    set: &mut dyn FnMut(&mut Value) -> Result<(), Error>,
) -> Result<(), Error> {
    let path = split_path(&fs.path);
    let kind = if fs.create { kind } else { CreateKind::None };
    walk(obj, &path, kind, set)
}

fn walk(
    node: &mut Value,
    path: &[String],
    kind: CreateKind,
    set: &mut dyn FnMut(&mut Value) -> Result<(), Error>,
) -> Result<(), Error> {
    if path.is_empty() {
        return set(node);
    }
    match node {
        Value::Null => Ok(()),
        Value::Seq(items) => {
            for it in items.iter_mut() {
                walk(it, path, kind, set)?;
            }
            Ok(())
        }
        Value::Map(m) => {
            let (name, is_seq) = match path[0].strip_suffix("[]") {
                Some(n) => (n, true),
                None => (path[0].as_str(), false),
            };
            if name.is_empty() {
                return Err(Error::field(
                    &path[0],
                    "cannot set or create an empty field name",
                ));
            }
            let create = if kind == CreateKind::None || is_seq {
                None
            } else if path.len() <= 1 {
                Some(kind)
            } else {
                Some(CreateKind::Map)
            };
            if !m.contains_key(name) {
                match create {
                    None => return Ok(()),
                    Some(CreateKind::Scalar) => {
                        m.insert(name.to_string(), Value::String(String::new()));
                    }
                    Some(_) => {
                        m.insert(name.to_string(), Value::map());
                    }
                }
            }
            let Some(child) = m.get_mut(name) else {
                return Ok(());
            };
            if child.is_null() {
                match (create, is_seq) {
                    (_, true) => *child = Value::Seq(Vec::new()),
                    (Some(CreateKind::Scalar), _) => *child = Value::String(String::new()),
                    (Some(CreateKind::Map), _) => *child = Value::map(),
                    _ => {}
                }
            }
            walk(child, &path[1..], kind, set).map_err(|e| e.context(format!("fieldName: {name}")))
        }
        _ => Err(Error::field(
            path.join("/"),
            "expected sequence or mapping node",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    #[test]
    fn default_tables_load() {
        let tc = TransformerConfig::defaults().unwrap();
        assert!(tc.name_prefix.iter().any(|f| f.path == "metadata/name"));
        assert!(tc
            .name_reference
            .iter()
            .any(|b| b.target.kind == "ConfigMap"));
        assert!(tc.common_labels.len() > 10);
    }

    #[test]
    fn walks_through_sequences_and_creates() {
        let mut v = parse_one("spec:\n  containers:\n  - name: a\n  - name: b\n").unwrap();
        let fs = FieldSpec {
            gvk: Gvk::default(),
            path: "spec/containers/image".into(),
            create: true,
        };
        apply(&mut v, &fs, CreateKind::Scalar, &mut |n| {
            *n = Value::from("x");
            Ok(())
        })
        .unwrap();
        let c = v
            .get_path(&["spec", "containers"])
            .unwrap()
            .as_seq()
            .unwrap();
        assert!(c.iter().all(|c| c.get("image") == Some(&Value::from("x"))));
        assert_eq!(
            split_path(r"metadata/annotations/a\/b"),
            vec!["metadata", "annotations", "a/b"]
        );
    }
}
