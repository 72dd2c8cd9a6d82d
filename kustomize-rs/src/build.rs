//! The build pipeline (`api/internal/target/kusttarget.go`, `api/krusty/kustomizer.go`).
//!
//! For one kustomization directory: accumulate `resources` (files, or directories built
//! recursively and merged in), load `configurations`/`crds` field specs, run generators, then
//! `components` (which act on this accumulator), then the builtin transformers in kustomize's
//! fixed order, then `transformers:` plugins. At the top level only: hash suffixes, name
//! reference fix-ups, vars, local-config removal, sorting, and printing.

use crate::fieldspec::{parse_specs, FieldSpec, TransformerConfig};
use crate::fs::Loader;
pub use crate::fs::{FileSystem, LoadRestrictor, RemoteOptions};
use crate::generators;
use crate::kustfile::{self, Kustomization, PatchArgs};
use crate::resource::{Behavior, Origin, Resource};
use crate::transformers::{meta, nameref, patch, replacements, vars};
use crate::yaml::{parse_documents, to_yaml, Value};
use crate::Error;
use std::path::Path;
use std::sync::Arc;

/// The kustomize release whose behaviour this engine reproduces (printed in the
/// `app.kubernetes.io/managed-by` label that `buildMetadata: [managedByLabel]` adds).
pub const KUSTOMIZE_VERSION: &str = "v5.8.1";

/// Output order when the kustomization has no `sortOptions` (`--reorder`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reorder {
    /// kustomize's legacy kind-based order (the CLI default).
    #[default]
    Legacy,
    /// Input (FIFO) order.
    None,
}

/// One `helmCharts` entry handed to the [`HelmInflator`].
#[derive(Clone, Debug)]
pub struct HelmChartRequest {
    /// The entry as written (`name`, `repo`, `version`, `releaseName`, `namespace`,
    /// `valuesInline`, `valuesMerge`, `includeCRDs`, `skipHooks`, ...).
    pub chart: Value,
    /// `helmGlobals`, if any.
    pub globals: Option<Value>,
    /// The kustomization directory on disk (charts live under `chartHome` relative to it).
    pub dir: std::path::PathBuf,
    /// The content of `valuesFile`, read through the load restrictor.
    pub values_file: Option<String>,
}

/// Inflates a `helmCharts` entry into a YAML stream (what `helm template` prints). kustomize
/// shells out to `helm`; Stackwave passes its own in-process renderer.
pub type HelmInflator =
    std::sync::Arc<dyn Fn(&HelmChartRequest) -> Result<String, Error> + Send + Sync>;

/// Build options (the `kubectl kustomize` flags).
#[derive(Clone, Default)]
pub struct Options {
    /// `--load-restrictor`.
    pub load_restrictor: LoadRestrictor,
    /// `--reorder`; `None` means "not given" (the kustomization's `sortOptions` or legacy).
    pub reorder: Option<Reorder>,
    /// Remote resource fetching (cache, offline switch).
    pub remote: RemoteOptions,
    /// Renderer for `helmCharts` (`--enable-helm`); without one, `helmCharts` is an error.
    pub helm: Option<HelmInflator>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("load_restrictor", &self.load_restrictor)
            .field("reorder", &self.reorder)
            .field("remote", &self.remote)
            .field("helm", &self.helm.is_some())
            .finish()
    }
}

/// The state carried through one kustomization's build.
#[derive(Clone, Debug)]
pub struct Accumulator {
    /// Resources in order.
    pub resources: Vec<Resource>,
    /// Transformer configuration in force, shared until changed: every kustomization starts
    /// from the one default configuration, and merging an unchanged one costs nothing.
    pub config: Arc<TransformerConfig>,
    /// Declared vars.
    pub vars: Vec<Value>,
}

/// Merges `other` into `dst` (`TransformerConfig.Merge`), skipping the work when `other` adds
/// nothing: it is `dst` itself or the untouched defaults, which every configuration contains.
fn merge_config(
    dst: &mut Arc<TransformerConfig>,
    other: &Arc<TransformerConfig>,
) -> Result<(), Error> {
    if Arc::ptr_eq(dst, other) || Arc::ptr_eq(other, &TransformerConfig::shared_defaults()?) {
        return Ok(());
    }
    Arc::make_mut(dst).merge(other);
    Ok(())
}

impl Accumulator {
    fn new() -> Result<Accumulator, Error> {
        Ok(Accumulator {
            resources: Vec::new(),
            config: TransformerConfig::shared_defaults()?,
            vars: Vec::new(),
        })
    }

    fn append(&mut self, r: Resource) -> Result<(), Error> {
        let id = r.cur_id();
        if self.resources.iter().any(|x| x.cur_id().equals(&id)) {
            return Err(Error::conflict(format!(
                "may not add resource with an already registered id: {id}"
            )));
        }
        self.resources.push(r);
        Ok(())
    }

    fn merge(&mut self, other: Accumulator) -> Result<(), Error> {
        for r in other.resources {
            self.append(r)?;
        }
        merge_config(&mut self.config, &other.config)?;
        for v in other.vars {
            let name = v.get("name").and_then(Value::scalar_string);
            if self
                .vars
                .iter()
                .any(|x| x.get("name").and_then(Value::scalar_string) == name)
            {
                return Err(Error::var(format!(
                    "var '{}' already encountered",
                    name.unwrap_or_default()
                )));
            }
            self.vars.push(v);
        }
        Ok(())
    }

    /// Adds a generated resource: create it, or merge/replace an existing one
    /// (`resWrangler.appendReplaceOrMerge`).
    fn absorb(&mut self, mut r: Resource) -> Result<(), Error> {
        let id = r.cur_id();
        let matches: Vec<usize> = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, x)| x.prev_ids().iter().any(|p| p.equals(&id)))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [] => match r.behavior {
                Behavior::Create => self.append(r),
                _ => Err(Error::conflict(format!(
                    "id {id} does not exist; cannot merge or replace"
                ))),
            },
            [i] => {
                let old = &self.resources[*i];
                if r.behavior == Behavior::Create {
                    return Err(Error::conflict(format!(
                        "id {id} exists; behavior must be merge or replace"
                    )));
                }
                let mut labels = old.string_map("labels");
                for (k, v) in r.string_map("labels") {
                    set_pair(&mut labels, k, v);
                }
                let mut annotations = old.string_map("annotations");
                for (k, v) in r.string_map("annotations") {
                    set_pair(&mut annotations, k, v);
                }
                r.set_string_map("labels", labels);
                r.set_string_map("annotations", annotations);
                r.set_name(old.name());
                r.set_namespace(old.namespace());
                if r.behavior == Behavior::Merge {
                    for field in ["data", "binaryData"] {
                        if let Some(Value::Map(od)) = old.obj.get(field) {
                            let mut merged = od.clone();
                            if let Some(Value::Map(nd)) = r.obj.get(field) {
                                for (k, v) in nd {
                                    merged.insert(k.clone(), v.clone());
                                }
                            }
                            if let Some(m) = r.obj.as_map_mut() {
                                m.insert(field.into(), Value::Map(merged));
                            }
                        }
                    }
                }
                let mut kept = old.clone();
                kept.obj = r.obj;
                if r.behavior == Behavior::Replace {
                    kept.origin = r.origin;
                }
                // A hash suffix only when both the target and the incoming generator want one.
                kept.needs_hash = old.needs_hash && r.needs_hash;
                self.resources[*i] = kept;
                Ok(())
            }
            _ => Err(Error::conflict(format!(
                "found multiple objects that could accept merge of {id}"
            ))),
        }
    }
}

fn set_pair(pairs: &mut Vec<(String, String)>, k: String, v: String) {
    match pairs.iter_mut().find(|(kk, _)| *kk == k) {
        Some(p) => p.1 = v,
        None => pairs.push((k, v)),
    }
}

/// Parses resource documents: empty documents are dropped, `kind: *List` documents with
/// `items` are expanded, and every object needs a kind and (unless a List) a name.
///
/// # Errors
/// Malformed YAML, non-mapping documents, missing kind or name.
pub fn parse_resources(text: &str, origin: &str) -> Result<Vec<Resource>, Error> {
    let docs = parse_documents(text).map_err(|source| Error::MalformedYaml {
        file: origin.to_string(),
        source,
    })?;
    let mut out = Vec::new();
    let mut queue: std::collections::VecDeque<Value> = docs.into();
    while let Some(d) = queue.pop_front() {
        let m = match &d {
            Value::Null => continue,
            Value::Map(m) if m.is_empty() => continue,
            Value::Map(m) => m,
            other => {
                return Err(Error::load(
                    origin,
                    format!(
                        "{origin}: expected a mapping for a resource, found a {}",
                        other.kind_name()
                    ),
                ))
            }
        };
        let kind = m
            .get("kind")
            .and_then(Value::scalar_string)
            .unwrap_or_default();
        if kind.is_empty() {
            return Err(Error::load(
                origin,
                format!("{origin}: missing kind in object {}", one_line(&d)),
            ));
        }
        if kind.ends_with("List") {
            if let Some(items) = m.get("items") {
                match items {
                    Value::Seq(items) => {
                        for (i, it) in items.iter().enumerate() {
                            queue.insert(i, it.clone());
                        }
                    }
                    Value::Null => {}
                    _ => {
                        return Err(Error::load(
                            origin,
                            format!("{origin}: items in {kind} is not a list"),
                        ))
                    }
                }
                continue;
            }
        } else if d.str_at(&["metadata", "name"]).unwrap_or("").is_empty()
            && d.get_path(&["metadata", "name"])
                .and_then(Value::scalar_string)
                .unwrap_or_default()
                .is_empty()
        {
            return Err(Error::load(
                origin,
                format!("{origin}: missing metadata.name in object {}", one_line(&d)),
            ));
        }
        out.push(Resource::new(d));
    }
    Ok(out)
}

fn one_line(v: &Value) -> String {
    to_yaml(v)
        .unwrap_or_default()
        .replace('\n', " ")
        .trim()
        .to_string()
}

/// Builds a kustomization directory and returns the printed YAML stream.
///
/// # Errors
/// Any build error, naming the file and cause.
pub fn build_dir(dir: &Path, opts: &Options) -> Result<String, Error> {
    let resources = build_resources(dir, opts)?;
    print_resources(&resources)
}

/// Prints resources as `kustomize build` does: each as YAML, separated by `---`.
///
/// # Errors
/// Values JSON cannot carry (NaN, infinities).
pub fn print_resources(resources: &[Resource]) -> Result<String, Error> {
    let mut out = String::new();
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(&r.obj).map_err(|e| Error::from(e).context(r.cur_id()))?);
    }
    Ok(out)
}

/// Builds a kustomization directory into its final, sorted resources.
///
/// # Errors
/// Any build error.
pub fn build_resources(dir: &Path, opts: &Options) -> Result<Vec<Resource>, Error> {
    build_in(
        std::sync::Arc::new(crate::fs::FileSystem::disk()),
        dir,
        opts,
    )
}

/// Builds a kustomization directory of a (possibly layered, in-memory) file system.
///
/// # Errors
/// Any build error.
pub fn build_in(
    fs: std::sync::Arc<crate::fs::FileSystem>,
    dir: &Path,
    opts: &Options,
) -> Result<Vec<Resource>, Error> {
    let ldr = Loader::with_fs(fs, dir, opts.load_restrictor, opts.remote.clone())?;
    // A Component builds on its own like a Kustomization (krusty `Kustomizer.Run` loads any
    // kind; only `resources:` refuses Components).
    let k = kustfile::load(&ldr)?;
    crate::openapi::set_custom_schema(None);
    HELM.with(|h| *h.borrow_mut() = opts.helm.clone());
    apply_openapi(&ldr, &k)?;
    let tr = Tracking {
        origins: k.build_metadata.iter().any(|m| m == "originAnnotations"),
        transformations: k
            .build_metadata
            .iter()
            .any(|m| m == "transformerAnnotations"),
    };
    let built = accumulate_target(&ldr, &k, "", tr, Accumulator::new()?);
    let mut acc = built?;
    // Top level only: hash suffixes, then back-references, then vars.
    add_hash_suffixes(&mut acc.resources);
    nameref::fix(&acc.config.name_reference, &mut acc.resources)?;
    vars::resolve(&acc.vars, &acc.config.var_reference, &mut acc.resources)?;
    acc.resources
        .retain(|r| r.annotation("config.kubernetes.io/local-config").as_deref() != Some("true"));
    sort(&k, opts, &mut acc.resources)?;
    if k.build_metadata.iter().any(|m| m == "managedByLabel") {
        for r in acc.resources.iter_mut() {
            if let Some(m) = r.obj.ensure_map_path(&["metadata", "labels"]) {
                m.insert(
                    "app.kubernetes.io/managed-by".into(),
                    Value::String(format!("kustomize-{}", KUSTOMIZE_VERSION)),
                );
            }
        }
    }
    for r in acc.resources.iter_mut() {
        let mut ann = r.string_map("annotations");
        if tr.transformations && !r.transformations.is_empty() {
            let text: String = r
                .transformations
                .iter()
                .map(|o| o.to_yaml("- ", "  "))
                .collect();
            ann.push(("alpha.config.kubernetes.io/transformations".into(), text));
        }
        if let (true, Some(o)) = (tr.origins, &r.origin) {
            ann.push(("config.kubernetes.io/origin".into(), o.to_yaml("", "")));
        }
        // kustomize's internal annotations come and go on every resource, so the field is
        // always rewritten: string values, and no field at all when empty or null.
        if !ann.is_empty() || r.obj.get_path(&["metadata", "annotations"]).is_some() {
            r.set_string_map("annotations", ann);
        }
    }
    Ok(acc.resources)
}

thread_local! {
    /// The Helm renderer of the build running on this thread.
    static HELM: std::cell::RefCell<Option<HelmInflator>> = const { std::cell::RefCell::new(None) };
}

/// Which provenance annotations the top-level `buildMetadata` asks for (it applies to the
/// whole build, as kustomize copies it into every sub-kustomization).
#[derive(Clone, Copy, Debug, Default)]
struct Tracking {
    origins: bool,
    transformations: bool,
}

/// Joins a relative path onto a relative directory and cleans it lexically, keeping leading
/// `..` (Go `filepath.Join`).
fn join_rel(dir: &str, p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in dir.split('/').chain(p.split('/')) {
        match seg {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Installs a kustomization's `openapi` schema (`openapi.SetSchema`): `version` must be the
/// builtin `v1.21.2`; `path` loads a custom schema (JSON or YAML) that replaces the builtin
/// one for the rest of the build.
fn apply_openapi(ldr: &Loader, k: &Kustomization) -> Result<(), Error> {
    let Some(o) = &k.openapi else { return Ok(()) };
    let path = o
        .get("path")
        .and_then(Value::scalar_string)
        .filter(|s| !s.is_empty());
    let version = o
        .get("version")
        .and_then(Value::scalar_string)
        .filter(|s| !s.is_empty());
    match (path, version) {
        (Some(_), Some(_)) => Err(Error::kustomization(
            "openapi",
            "builtin version and custom schema provided, cannot use both",
        )),
        (None, Some(v)) if v != "v1.21.2" => Err(Error::kustomization(
            "openapi.version",
            format!("the specified OpenAPI version '{v}' is not built in; only v1.21.2 is"),
        )),
        (None, _) => Ok(()),
        (Some(p), None) => {
            let text = ldr.load_string(&p)?;
            let schema = crate::yaml::parse_one(&text)
                .map_err(|e| Error::from(e).context(format!("openapi schema {p}")))?;
            crate::openapi::set_custom_schema(Some(schema));
            Ok(())
        }
    }
}

fn accumulate_target(
    ldr: &Loader,
    k: &Kustomization,
    dir: &str,
    tr: Tracking,
    mut acc: Accumulator,
) -> Result<Accumulator, Error> {
    accumulate_resources(ldr, &k.resources, dir, tr, &mut acc)
        .map_err(|e| e.context("accumulating resources"))?;
    for c in &k.configurations {
        let text = ldr.load_string(c)?;
        let v = crate::yaml::parse_one(&text).map_err(|e| Error::from(e).context(c))?;
        Arc::make_mut(&mut acc.config).merge(&TransformerConfig::from_value(&v, c)?);
    }
    for c in &k.crds {
        let text = ldr.load_string(c)?;
        load_crd_config(&text, c, Arc::make_mut(&mut acc.config))?;
    }
    run_generators(ldr, k, dir, tr, &mut acc)?;
    for c in &k.components {
        let cl = ldr
            .child(c)
            .map_err(|e| e.context(format!("loader.New {c:?}")))?;
        let ck = kustfile::load(&cl)?;
        apply_openapi(&cl, &ck)?;
        if ck.kind != "Component" {
            return Err(Error::kustomization(
                "components",
                format!(
                    "expected kind 'Component' for path '{}' but got '{}'",
                    cl.root().display(),
                    ck.kind
                ),
            ));
        }
        acc = accumulate_target(&cl, &ck, &join_rel(dir, c), tr, acc).map_err(|e| {
            e.context(format!(
                "accumulating components: accumulateDirectory: \"{}\"",
                cl.root().display()
            ))
        })?;
    }
    run_transformers(ldr, k, dir, tr, &mut acc)?;
    // Validators are loaded as plugins (`kusttarget.go` `runValidators`); none is a builtin,
    // so each one is an external plugin, which this engine does not run.
    for v in &k.validators {
        if let Some(cfg) = plugin_configs(ldr, v, dir, tr)?.first() {
            return Err(external_plugin(
                cfg.str_at(&["kind"]).unwrap_or(""),
                "validator",
            ));
        }
    }
    for v in &k.vars {
        let name = v
            .get("name")
            .and_then(Value::scalar_string)
            .unwrap_or_default();
        if acc
            .vars
            .iter()
            .any(|x| x.get("name").and_then(Value::scalar_string).as_deref() == Some(name.as_str()))
        {
            return Err(Error::var(format!("var '{name}' already encountered")));
        }
        // Vars bind to their object at the level that declares them (`ResAccumulator.MergeVars`).
        vars::bind(v, &name, &mut acc.resources)?;
        acc.vars.push(v.clone());
    }
    Ok(acc)
}

fn accumulate_resources(
    ldr: &Loader,
    paths: &[String],
    dir: &str,
    tr: Tracking,
    acc: &mut Accumulator,
) -> Result<(), Error> {
    for p in paths {
        let as_file = ldr.join(p);
        let file_err = if crate::fs::is_url(p) || ldr.is_file(p) {
            match ldr.load_string(p).and_then(|t| parse_resources(&t, p)) {
                Ok(rs) => {
                    for mut r in rs {
                        r.origin = Some(Origin {
                            path: Some(join_rel(dir, p)),
                            ..Default::default()
                        });
                        acc.append(r)
                            .map_err(|e| e.context(format!("merging resources from '{p}'")))?;
                    }
                    continue;
                }
                Err(e) => e,
            }
        } else {
            Error::load(&as_file, format!("'{}' is not a file", as_file.display()))
        };
        if matches!(file_err.root(), Error::MalformedYaml { .. }) {
            return Err(file_err);
        }
        let sub = ldr
            .child(p)
            .map_err(|e| e.context(format!("accumulation err='{file_err}'")))?;
        let sk = kustfile::load(&sub).map_err(|e| {
            e.context(format!(
                "couldn't make target for path '{}'",
                sub.root().display()
            ))
        })?;
        if sk.kind == "Component" {
            return Err(Error::kustomization(
                "resources",
                format!(
                    "expected kind != 'Component' for path '{}'",
                    sub.root().display()
                ),
            ));
        }
        apply_openapi(&sub, &sk)?;
        let sub_acc = accumulate_target(&sub, &sk, &join_rel(dir, p), tr, Accumulator::new()?)
            .map_err(|e| {
                e.context(format!(
                    "recursed accumulation of path '{}'",
                    sub.root().display()
                ))
            })?;
        acc.merge(sub_acc).map_err(|e| {
            e.context(format!(
                "recursed merging from path '{}'",
                sub.root().display()
            ))
        })?;
    }
    Ok(())
}

/// Reads field specs from a `crds:` file: OpenAPI definitions keyed by type name
/// (`group.version.Kind`), each `{"Schema": {...}}` (`api/internal/accumulator/loadconfigfromcrds.go`).
/// For every definition that looks like a Kubernetes type (has `kind`, `apiVersion` and
/// `metadata` properties) its properties, followed through `$ref`s into other definitions
/// of the file, give: `x-kubernetes-annotation` → commonAnnotations field,
/// `x-kubernetes-label-selector` → commonLabels field, `x-kubernetes-identity` → namePrefix
/// field, `x-kubernetes-object-ref-api-version` + `-kind` → a name reference to that kind at
/// `<property>/<x-kubernetes-object-ref-name-key, default name>`. The field specs select the
/// kind only (the last dotted part of the type name).
///
/// # Errors
/// Unparsable files and type names without three dotted parts.
fn load_crd_config(text: &str, origin: &str, tc: &mut TransformerConfig) -> Result<(), Error> {
    let parse_err = |e: String| {
        Error::kustomization(
            "crds",
            format!("unable to parse open API definition from '{origin}': {e}"),
        )
    };
    // JSON or YAML; JSON parses as YAML.
    let defs = crate::yaml::parse_one(text).map_err(|e| parse_err(e.to_string()))?;
    let Some(map) = defs.as_map() else {
        return Ok(());
    };
    let props_of = |name: &str| -> Option<&crate::yaml::Mapping> {
        map.get(name)?.get("Schema")?.get("properties")?.as_map()
    };
    let mut found = TransformerConfig::default();
    for name in map.keys() {
        let Some(props) = props_of(name) else {
            continue;
        };
        if !["kind", "apiVersion", "metadata"]
            .iter()
            .all(|k| props.contains_key(*k))
        {
            continue;
        }
        if name.split('.').count() < 3 {
            return Err(Error::kustomization(
                "crds",
                "`api` should be specified in dot notation: group.version.kind",
            ));
        }
        let gvk = crate::resource::Gvk {
            kind: name.rsplit('.').next().unwrap_or("").to_string(),
            ..Default::default()
        };
        let mut stack: Vec<(String, Vec<String>)> = vec![(name.clone(), Vec::new())];
        let mut seen = 0usize;
        while let Some((type_name, path)) = stack.pop() {
            seen += 1;
            if seen > 10_000 {
                break; // cyclic `$ref`s
            }
            let Some(props) = props_of(&type_name) else {
                continue;
            };
            for (prop, schema) in props {
                let mut p = path.clone();
                p.push(prop.clone());
                let fs = |p: &[String]| FieldSpec {
                    gvk: gvk.clone(),
                    path: p.join("/"),
                    create: false,
                };
                let ext = |k: &str| schema.get(k).and_then(Value::scalar_string);
                if ext("x-kubernetes-annotation").is_some() {
                    found.common_annotations.push(fs(&p));
                }
                if ext("x-kubernetes-label-selector").is_some() {
                    found.common_labels.push(fs(&p));
                }
                if ext("x-kubernetes-identity").is_some() {
                    found.name_prefix.push(fs(&p));
                }
                if let (Some(version), Some(kind)) = (
                    ext("x-kubernetes-object-ref-api-version"),
                    ext("x-kubernetes-object-ref-kind"),
                ) {
                    let key =
                        ext("x-kubernetes-object-ref-name-key").unwrap_or_else(|| "name".into());
                    let mut rp = p.clone();
                    rp.push(key);
                    found.merge(&TransformerConfig {
                        name_reference: vec![crate::fieldspec::NameBackRef {
                            target: crate::resource::Gvk {
                                group: String::new(),
                                version,
                                kind,
                            },
                            referrers: vec![fs(&rp)],
                        }],
                        ..Default::default()
                    });
                }
                if let Some(r) = ext("$ref") {
                    stack.push((r, p));
                }
            }
        }
    }
    tc.merge(&found);
    Ok(())
}

fn run_generators(
    ldr: &Loader,
    k: &Kustomization,
    dir: &str,
    tr: Tracking,
    acc: &mut Accumulator,
) -> Result<(), Error> {
    let here = join_rel(dir, &k.file_name);
    let builtin = |kind: &str, name: &str, configured_in: &str| Origin {
        path: None,
        configured_in: Some(configured_in.to_string()),
        configured_by: Some(("builtin".into(), kind.into(), name.into())),
    };
    for args in &k.config_map_generator {
        let mut r = generators::generate(ldr, args, "ConfigMap", k.generator_options.as_ref())?;
        r.origin = Some(builtin("ConfigMapGenerator", "", &here));
        acc.absorb(r)
            .map_err(|e| e.context("merging from generator"))?;
    }
    for args in &k.secret_generator {
        let mut r = generators::generate(ldr, args, "Secret", k.generator_options.as_ref())?;
        r.origin = Some(builtin("SecretGenerator", "", &here));
        acc.absorb(r)
            .map_err(|e| e.context("merging from generator"))?;
    }
    if !k.helm_charts.is_empty() {
        let Some(inflate) = HELM.with(|h| h.borrow().clone()) else {
            return Err(Error::unsupported("helmCharts without a Helm renderer", "helmCharts: inflating Helm charts needs a Helm renderer (stackwave kustomize build --enable-helm)"));
        };
        for chart in &k.helm_charts {
            let values_file = match chart
                .get("valuesFile")
                .and_then(Value::scalar_string)
                .filter(|s| !s.is_empty())
            {
                Some(f) => Some(ldr.load_string(&f)?),
                None => None,
            };
            let req = HelmChartRequest {
                chart: chart.clone(),
                globals: k.helm_globals.clone(),
                dir: ldr.root().to_path_buf(),
                values_file,
            };
            let name = chart
                .get("name")
                .and_then(Value::scalar_string)
                .unwrap_or_default();
            let text = inflate(&req).map_err(|e| e.context(format!("helmCharts '{name}'")))?;
            let origin = Origin {
                path: None,
                configured_in: Some(here.clone()),
                configured_by: Some((
                    "builtin".into(),
                    "HelmChartInflationGenerator".into(),
                    name.clone(),
                )),
            };
            for mut r in parse_resources(&text, &format!("helm chart {name}"))? {
                r.origin = Some(origin.clone());
                acc.absorb(r)?;
            }
        }
    }
    for g in &k.generators {
        let configured_in = if plugin_is_inline(g) {
            here.clone()
        } else {
            join_rel(dir, g)
        };
        for cfg in plugin_configs(ldr, g, dir, tr)? {
            let kind = cfg.str_at(&["kind"]).unwrap_or("").to_string();
            let name = cfg.str_at(&["metadata", "name"]).unwrap_or("").to_string();
            let mut r = match kind.as_str() {
                "ConfigMapGenerator" => generators::generate(ldr, &cfg, "ConfigMap", None)?,
                "SecretGenerator" => generators::generate(ldr, &cfg, "Secret", None)?,
                "IAMPolicyGenerator" => generators::iam_policy(&cfg)?,
                other => return Err(external_plugin(other, "generator")),
            };
            r.origin = Some(builtin(&kind, &name, &configured_in));
            acc.absorb(r)?;
        }
    }
    Ok(())
}

/// Loads `transformers:`/`generators:` entries: inline YAML, or files/directories of configs.
fn plugin_is_inline(entry: &str) -> bool {
    parse_documents(entry).is_ok_and(|d| d.iter().any(|x| matches!(x, Value::Map(_))))
}

/// A plugin kind that is not a builtin: kustomize's error when external plugins are off
/// (`api/internal/plugins/loader/loader.go`), and why this engine never turns them on.
fn external_plugin(kind: &str, role: &'static str) -> Error {
    Error::unsupported(
        role,
        format!(
            "external plugins disabled; unable to load external plugin '{kind}' ({role} plugins run external programs or Go code: exec, Go and KRM-function plugins are not run by this engine)"
        ),
    )
}

fn plugin_configs(ldr: &Loader, entry: &str, dir: &str, tr: Tracking) -> Result<Vec<Value>, Error> {
    if let Ok(docs) = parse_documents(entry) {
        let maps: Vec<Value> = docs
            .into_iter()
            .filter(|d| matches!(d, Value::Map(_)))
            .collect();
        if !maps.is_empty() {
            return Ok(maps);
        }
    }
    if ldr.is_dir(entry) {
        let sub = ldr.child(entry)?;
        let sk = kustfile::load(&sub)?;
        let acc = accumulate_target(&sub, &sk, &join_rel(dir, entry), tr, Accumulator::new()?)?;
        return Ok(acc.resources.into_iter().map(|r| r.obj).collect());
    }
    let text = ldr.load_string(entry)?;
    Ok(parse_documents(&text)
        .map_err(|e| Error::from(e).context(entry))?
        .into_iter()
        .filter(|d| matches!(d, Value::Map(_)))
        .collect())
}

fn specs_or(v: &Value, key: &str, default: &[FieldSpec]) -> Result<Vec<FieldSpec>, Error> {
    match v.get(key) {
        Some(x) if !x.is_null() => parse_specs(Some(x), key),
        _ => Ok(default.to_vec()),
    }
}

fn run_transformers(
    ldr: &Loader,
    k: &Kustomization,
    dir: &str,
    tr: Tracking,
    acc: &mut Accumulator,
) -> Result<(), Error> {
    let tc = acc.config.clone();
    let here = join_rel(dir, &k.file_name);
    let res = &mut acc.resources;
    // `transformerAnnotations`: every resource present when a configured builtin runs records it.
    let mark = |res: &mut Vec<Resource>, kind: &str| {
        if tr.transformations {
            let o = Origin {
                path: None,
                configured_in: Some(here.clone()),
                configured_by: Some(("builtin".into(), kind.into(), String::new())),
            };
            for r in res.iter_mut() {
                r.transformations.push(o.clone());
            }
        }
    };
    if !k.patches_strategic_merge.is_empty() {
        patch::patches_strategic_merge(ldr, &k.patches_strategic_merge, res)?;
        mark(res, "PatchStrategicMergeTransformer");
    }
    for p in &k.patches {
        patch::patch_entry(ldr, p, res)?;
        mark(res, "PatchTransformer");
    }
    if !k.namespace.is_empty() {
        meta::namespace(&k.namespace, &tc.namespace, Default::default(), res)?;
        mark(res, "NamespaceTransformer");
    }
    if !k.name_prefix.is_empty() {
        meta::prefix_suffix(&k.name_prefix, "", &tc.name_prefix, res)?;
        mark(res, "PrefixTransformer");
    }
    if !k.name_suffix.is_empty() {
        meta::prefix_suffix("", &k.name_suffix, &tc.name_suffix, res)?;
        mark(res, "SuffixTransformer");
    }
    for l in &k.labels {
        let mut specs = parse_specs(l.fields.as_ref(), "labels.fields")?;
        let extra: Vec<FieldSpec> = if l.include_selectors {
            tc.common_labels.clone()
        } else {
            let mut v = vec![FieldSpec {
                path: "metadata/labels".into(),
                create: true,
                ..Default::default()
            }];
            if l.include_templates {
                v.extend(tc.template_labels.iter().cloned());
            }
            v
        };
        for fs in extra.into_iter().chain(tc.labels.iter().cloned()) {
            if !specs.iter().any(|s| s.path == fs.path && s.gvk == fs.gvk) {
                specs.push(fs);
            }
        }
        meta::add_map_entries(&l.pairs, &specs, res)?;
        mark(res, "LabelTransformer");
    }
    if !k.common_labels.is_empty() {
        meta::add_map_entries(&k.common_labels, &tc.common_labels, res)?;
        mark(res, "LabelTransformer");
    }
    if !k.common_annotations.is_empty() {
        meta::add_map_entries(&k.common_annotations, &tc.common_annotations, res)?;
        mark(res, "AnnotationsTransformer");
    }
    for p in &k.patches_json6902 {
        patch::patch_json6902_entry(ldr, p, res)?;
        mark(res, "PatchJson6902Transformer");
    }
    for r in &k.replicas {
        meta::replicas(r, &tc.replicas, res)?;
        mark(res, "ReplicaCountTransformer");
    }
    for i in &k.images {
        meta::images(&meta::ImageArgs::from_value(i), &tc.images, res)?;
        mark(res, "ImageTagTransformer");
    }
    if !k.replacements.is_empty() {
        replacements::run(ldr, &k.replacements, res)?;
        mark(res, "ReplacementTransformer");
    }
    for t in &k.transformers {
        for cfg in plugin_configs(ldr, t, dir, tr)? {
            run_plugin(ldr, &cfg, &tc, res).map_err(|e| e.context(format!("transformer {t}")))?;
        }
    }
    Ok(())
}

/// `HashTransformer` (`api/internal/builtins/HashTransformer.go`): every resource that needs
/// a hash suffix (generated, hash not disabled) gets `-<hash of its content>` appended. The
/// need stays marked, so an inline `HashTransformer` and the top-level one both append.
fn add_hash_suffixes(res: &mut [Resource]) {
    for r in res.iter_mut().filter(|r| r.needs_hash) {
        let h = generators::hash(&r.obj);
        r.store_previous_id();
        let name = format!("{}-{h}", r.name());
        r.set_name(&name);
    }
}

/// Runs a builtin transformer given as a plugin configuration (`transformers:` entries).
fn run_plugin(
    ldr: &Loader,
    cfg: &Value,
    tc: &TransformerConfig,
    res: &mut Vec<Resource>,
) -> Result<(), Error> {
    let kind = cfg.str_at(&["kind"]).unwrap_or("");
    let s = |k: &str| {
        cfg.get(k)
            .and_then(Value::scalar_string)
            .unwrap_or_default()
    };
    let pairs = |k: &str| cfg.string_pairs(k);
    match kind {
        "PrefixSuffixTransformer" => meta::prefix_suffix(
            &s("prefix"),
            &s("suffix"),
            &specs_or(cfg, "fieldSpecs", &tc.name_prefix)?,
            res,
        ),
        // Not wired as a builtin plugin upstream (`api/internal/plugins/builtinhelpers`):
        // only the top-level `sortOptions` field sorts.
        "SortOrderTransformer" => {
            let (group, version) = match cfg.str_at(&["apiVersion"]).unwrap_or("").split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (
                    String::new(),
                    cfg.str_at(&["apiVersion"]).unwrap_or("").to_string(),
                ),
            };
            let group = if group.is_empty() {
                "[noGrp]".to_string()
            } else {
                group
            };
            Err(Error::kustomization(
                "transformers",
                format!("unable to load builtin {kind}.{version}.{group} (it only runs as the top-level sortOptions field)"),
            ))
        }
        "HashTransformer" => {
            add_hash_suffixes(res);
            Ok(())
        }
        "ValueAddTransformer" => crate::transformers::valueadd::run(ldr, cfg, res),
        "PrefixTransformer" => meta::prefix_suffix(
            &s("prefix"),
            "",
            &specs_or(cfg, "fieldSpecs", &tc.name_prefix)?,
            res,
        ),
        "SuffixTransformer" => meta::prefix_suffix(
            "",
            &s("suffix"),
            &specs_or(cfg, "fieldSpecs", &tc.name_suffix)?,
            res,
        ),
        "LabelTransformer" => meta::add_map_entries(
            &pairs("labels"),
            &specs_or(cfg, "fieldSpecs", &tc.common_labels)?,
            res,
        ),
        "AnnotationsTransformer" => meta::add_map_entries(
            &pairs("annotations"),
            &specs_or(cfg, "fieldSpecs", &tc.common_annotations)?,
            res,
        ),
        "NamespaceTransformer" => {
            let ns = cfg
                .str_at(&["metadata", "namespace"])
                .unwrap_or("")
                .to_string();
            let opts = meta::NamespaceOptions {
                unset_only: matches!(cfg.get("unsetOnly"), Some(Value::Bool(true))),
                subjects: meta::SubjectMode::parse(&s("setRoleBindingSubjects"))?,
            };
            meta::namespace(&ns, &specs_or(cfg, "fieldSpecs", &tc.namespace)?, opts, res)
        }
        "ImageTagTransformer" => {
            let img = cfg.get("imageTag").cloned().unwrap_or(Value::Null);
            meta::images(
                &meta::ImageArgs::from_value(&img),
                &specs_or(cfg, "fieldSpecs", &tc.images)?,
                res,
            )
        }
        "ReplicaCountTransformer" => {
            let r = cfg.get("replica").cloned().unwrap_or(Value::Null);
            meta::replicas(&r, &specs_or(cfg, "fieldSpecs", &tc.replicas)?, res)
        }
        "PatchTransformer" => {
            let args = PatchArgs {
                path: cfg
                    .get("path")
                    .and_then(Value::scalar_string)
                    .filter(|s| !s.is_empty()),
                patch: cfg
                    .get("patch")
                    .and_then(Value::scalar_string)
                    .filter(|s| !s.is_empty()),
                target: cfg.get("target").filter(|t| !t.is_null()).cloned(),
                options: Vec::new(),
            };
            patch::patch_entry(ldr, &args, res)
        }
        "PatchStrategicMergeTransformer" => {
            let mut entries: Vec<String> = match cfg.get("paths") {
                Some(Value::Seq(p)) => p.iter().filter_map(Value::scalar_string).collect(),
                _ => Vec::new(),
            };
            if let Some(p) = cfg.get("patches").and_then(Value::scalar_string) {
                entries.push(p);
            }
            patch::patches_strategic_merge(ldr, &entries, res)
        }
        "PatchJson6902Transformer" => {
            let args = PatchArgs {
                path: cfg.get("path").and_then(Value::scalar_string),
                patch: cfg.get("jsonOp").and_then(Value::scalar_string),
                target: cfg.get("target").cloned(),
                options: Vec::new(),
            };
            patch::patch_json6902_entry(ldr, &args, res)
        }
        "ReplacementTransformer" => {
            let reps = match cfg.get("replacements") {
                Some(Value::Seq(r)) => r.clone(),
                _ => Vec::new(),
            };
            replacements::run(ldr, &reps, res)
        }
        "" => Err(Error::kustomization(
            "transformers",
            "transformer config has no kind",
        )),
        other => Err(external_plugin(other, "transformer")),
    }
}

const ORDER_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: [&str; 2] = [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Applies `sortOptions` (or `--reorder`): legacy kind order (`api/builtins/SortOrderTransformer.go`,
/// `api/resid/gvk.go`) or FIFO.
fn sort(k: &Kustomization, opts: &Options, res: &mut [Resource]) -> Result<(), Error> {
    let so = k.sort_options.as_ref();
    let order = so
        .and_then(|s| s.get("order"))
        .and_then(Value::scalar_string);
    let legacy_opts = so
        .and_then(|s| s.get("legacySortOptions"))
        .filter(|v| !v.is_null());
    let legacy = match (order.as_deref(), opts.reorder) {
        (Some("fifo"), _) => {
            if legacy_opts.is_some() {
                return Err(Error::kustomization("sortOptions.legacySortOptions", "the field 'sortOptions.legacySortOptions' is set but 'sortOptions.order' is not 'legacy'"));
            }
            false
        }
        (Some("legacy"), _) => true,
        // A `sortOptions` without a known `order` (`SortOrderTransformer.Config`).
        (Some(_), _) => {
            return Err(Error::kustomization(
                "sortOptions.order",
                "the field 'sortOptions.order' must be one of [fifo, legacy]",
            ))
        }
        (None, _) if so.is_some() => {
            return Err(Error::kustomization(
                "sortOptions.order",
                "the field 'sortOptions.order' must be one of [fifo, legacy]",
            ))
        }
        (None, Some(Reorder::None)) => false,
        (None, _) => true,
    };
    if !legacy {
        return Ok(());
    }
    let list = |key: &str, def: &[&str]| -> Vec<String> {
        match legacy_opts.and_then(|l| l.get(key)) {
            Some(Value::Seq(items)) => items.iter().filter_map(Value::scalar_string).collect(),
            _ => def.iter().map(|s| s.to_string()).collect(),
        }
    };
    let first = list("orderFirst", &ORDER_FIRST);
    let last = list("orderLast", &ORDER_LAST);
    let rank = |kind: &str| -> i64 {
        if let Some(i) = first.iter().position(|k| k == kind) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|k| k == kind) {
            return 1 + i as i64;
        }
        0
    };
    res.sort_by(|a, b| {
        let (ia, ib) = (a.cur_id(), b.cur_id());
        if ia.gvk != ib.gvk {
            let (ra, rb) = (rank(&ia.gvk.kind), rank(&ib.gvk.kind));
            if ra != rb {
                return ra.cmp(&rb);
            }
            return ia.gvk.sort_string().cmp(&ib.gvk.sort_string());
        }
        ia.legacy_sort_string().cmp(&ib.legacy_sort_string())
    });
    Ok(())
}
