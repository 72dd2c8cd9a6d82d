//! Field-spec driven transformers: namespace, name prefix/suffix, labels, annotations,
//! images and replicas (`api/filters/{namespace,prefixsuffix,labels,annotations,imagetag,replicacount}`,
//! `api/internal/builtins/{NamespaceTransformer,PrefixSuffixTransformer,ImageTagTransformer,ReplicaCountTransformer}.go`).

use crate::fieldspec::{apply, CreateKind, FieldSpec};
use crate::resource::{Gvk, Resource};
use crate::yaml::Value;
use crate::Error;
use regex::Regex;

fn set_string(v: &str) -> impl FnMut(&mut Value) -> Result<(), Error> + '_ {
    move |n: &mut Value| {
        match n {
            Value::Map(_) | Value::Seq(_) => {
                return Err(Error::field(
                    "",
                    "namespace field specs must target scalar nodes",
                ));
            }
            _ => *n = Value::String(v.to_string()),
        }
        Ok(())
    }
}

/// Which (Cluster)RoleBinding subjects get the namespace (`setRoleBindingSubjects`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubjectMode {
    /// `defaultOnly` (the default): subjects named `default`.
    #[default]
    DefaultOnly,
    /// `allServiceAccounts`: subjects of kind `ServiceAccount`.
    AllServiceAccounts,
    /// `none`: no subject.
    None,
}

impl SubjectMode {
    /// Parses the option (`""` is the default).
    ///
    /// # Errors
    /// Any other value, with kustomize's message.
    pub fn parse(v: &str) -> Result<SubjectMode, Error> {
        match v {
            "" | "defaultOnly" => Ok(SubjectMode::DefaultOnly),
            "allServiceAccounts" => Ok(SubjectMode::AllServiceAccounts),
            "none" => Ok(SubjectMode::None),
            other => Err(Error::field("setRoleBindingSubjects", format!(
                "invalid value {other:?} for setRoleBindingSubjects: must be one of \"defaultOnly\", \"none\" or \"allServiceAccounts\""
            ))),
        }
    }
}

/// NamespaceTransformer options beyond the namespace (`api/filters/namespace/namespace.go`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NamespaceOptions {
    /// `unsetOnly`: only fields that are missing or empty are set (`SetEntryIfEmpty`).
    pub unset_only: bool,
    /// `setRoleBindingSubjects`.
    pub subjects: SubjectMode,
}

/// `namespace:` — sets `metadata.namespace` of namespaced resources and every namespace
/// field-spec, renames `v1` Namespaces, and sets the namespace of (Cluster)RoleBinding
/// subjects chosen by `opts.subjects` (`api/filters/namespace/namespace.go`).
///
/// # Errors
/// Field specs that hit non-scalars; two resources ending up with the same id.
pub fn namespace(
    ns: &str,
    specs: &[FieldSpec],
    opts: NamespaceOptions,
    resources: &mut [Resource],
) -> Result<(), Error> {
    if ns.is_empty() {
        return Ok(());
    }
    let set = |n: &mut Value| -> Result<(), Error> {
        if opts.unset_only && !matches!(n, Value::Null) && n.scalar_string().as_deref() != Some("")
        {
            return Ok(());
        }
        set_string(ns)(n)
    };
    for r in resources.iter_mut() {
        if r.obj.as_map().is_none_or(|m| m.is_empty()) {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        let api_version = r.api_version().to_string();
        if !gvk.is_cluster_scoped() && (!opts.unset_only || r.namespace().is_empty()) {
            r.set_namespace(ns);
        }
        let is_binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
        for fs in specs {
            if fs.path == "metadata/namespace"
                || (api_version != "v1" && fs.path == "metadata/name")
            {
                continue;
            }
            if is_binding && (fs.path == "subjects" || fs.path.starts_with("subjects/")) {
                continue;
            }
            if !gvk.is_selected_by(&fs.gvk) {
                continue;
            }
            apply(&mut r.obj, fs, CreateKind::Scalar, &mut |n: &mut Value| {
                set(n)
            })
            .map_err(|e| {
                e.context(format!(
                    "namespace transformation failed for {}",
                    r.cur_id()
                ))
            })?;
        }
        if is_binding {
            if let Some(Value::Seq(subjects)) = r.obj.get_mut("subjects") {
                for s in subjects.iter_mut() {
                    let chosen = match opts.subjects {
                        SubjectMode::DefaultOnly => s.str_at(&["name"]) == Some("default"),
                        SubjectMode::AllServiceAccounts => {
                            s.str_at(&["kind"]) == Some("ServiceAccount")
                        }
                        SubjectMode::None => false,
                    };
                    if let (true, Some(m)) = (chosen, s.as_map_mut()) {
                        let slot = m.entry("namespace".to_string()).or_insert(Value::Null);
                        set(slot)?;
                    }
                }
            }
        }
    }
    for (i, r) in resources.iter().enumerate() {
        let id = r.cur_id();
        if resources
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.cur_id().equals(&id))
        {
            return Err(Error::conflict(format!(
                "namespace transformation produces ID conflict: {id}"
            )));
        }
    }
    Ok(())
}

/// `namePrefix`/`nameSuffix` — skipped for CRDs, APIServices and Namespaces.
///
/// # Errors
/// Field specs that hit non-scalars.
pub fn prefix_suffix(
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    if prefix.is_empty() && suffix.is_empty() {
        return Ok(());
    }
    for r in resources.iter_mut() {
        let org = r.org_id();
        let kind = org.gvk.kind.as_str();
        if kind == "CustomResourceDefinition"
            || kind == "Namespace"
            || (kind == "APIService" && org.gvk.group == "apiregistration.k8s.io")
        {
            continue;
        }
        for fs in specs {
            if !org.gvk.is_selected_by(&fs.gvk) {
                continue;
            }
            if fs.path == "metadata/name" {
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
                r.store_previous_id();
            }
            let gvk = r.gvk();
            if !gvk.is_selected_by(&fs.gvk) {
                continue;
            }
            apply(&mut r.obj, fs, CreateKind::None, &mut |n: &mut Value| {
                if let Some(s) = n.scalar_string() {
                    *n = Value::String(format!("{prefix}{s}{suffix}"));
                }
                Ok(())
            })
            .map_err(|e| e.context(format!("name prefix/suffix for {}", r.cur_id())))?;
        }
    }
    Ok(())
}

/// Adds string entries to the mappings at the field specs (labels or annotations).
///
/// # Errors
/// A field spec that reaches a non-mapping.
pub fn add_map_entries(
    pairs: &[(String, String)],
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut sorted = pairs.to_vec();
    sorted.sort();
    for r in resources.iter_mut() {
        let gvk = r.gvk();
        for fs in specs.iter().filter(|fs| gvk.is_selected_by(&fs.gvk)) {
            apply(&mut r.obj, fs, CreateKind::Map, &mut |n: &mut Value| {
                if n.is_null() {
                    *n = Value::map();
                }
                let Value::Map(m) = n else {
                    return Err(Error::field(
                        "",
                        format!(
                            "wrong node kind: expected MappingNode but got {}",
                            n.kind_name()
                        ),
                    ));
                };
                for (k, v) in &sorted {
                    m.insert(k.clone(), Value::String(v.clone()));
                }
                Ok(())
            })
            .map_err(|e| {
                e.context(format!(
                    "adding {:?} to {} of {}",
                    sorted.iter().map(|p| &p.0).collect::<Vec<_>>(),
                    fs.path,
                    r.cur_id()
                ))
            })?;
        }
    }
    Ok(())
}

/// One `images` entry.
#[derive(Clone, Debug, Default)]
pub struct ImageArgs {
    name: String,
    new_name: String,
    new_tag: String,
    digest: String,
    tag_suffix: String,
}

impl ImageArgs {
    /// Reads an `images` entry.
    pub fn from_value(v: &Value) -> ImageArgs {
        let s = |k: &str| v.get(k).and_then(Value::scalar_string).unwrap_or_default();
        ImageArgs {
            name: s("name"),
            new_name: s("newName"),
            new_tag: s("newTag"),
            digest: s("digest"),
            tag_suffix: s("tagSuffix"),
        }
    }
}

/// `image.Split`: name, tag and digest of an image reference (the registry's port is not
/// mistaken for a tag).
pub fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let id = search.find('@');
    let ic = search.find(':');
    match (ic, id) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (ic, Some(d)) if ic.is_none_or(|c| d < c) => {
            let d = d + slash;
            (
                image[..d].to_string(),
                String::new(),
                image[d + 1..].to_string(),
            )
        }
        (Some(c), Some(d)) => {
            let (c, d) = (c + slash, d + slash);
            (
                image[..c].to_string(),
                image[c + 1..d].to_string(),
                image[d + 1..].to_string(),
            )
        }
        (Some(c), None) => {
            let c = c + slash;
            (
                image[..c].to_string(),
                image[c + 1..].to_string(),
                String::new(),
            )
        }
        _ => (image.to_string(), String::new(), String::new()),
    }
}

/// `image.IsImageMatched` (`api/image/image.go`): whether an image is `NAME`, an optional
/// `:tag` and an optional `@sha256:digest`, where NAME is a regular expression upstream.
enum ImageMatcher {
    /// A name of letters, digits and `/_-:.` (nearly every one): matched without compiling a
    /// regex, `.` matching any one character but a newline as in the upstream regex.
    Plain(String),
    /// Any other name, compiled as upstream compiles it.
    Regex(Regex),
}

impl ImageMatcher {
    fn new(name: &str) -> Option<ImageMatcher> {
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-:.".contains(c))
        {
            return Some(ImageMatcher::Plain(name.to_string()));
        }
        Regex::new(&format!(
            "^{name}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$"
        ))
        .ok()
        .map(ImageMatcher::Regex)
    }

    fn is_match(&self, value: &str) -> bool {
        let name = match self {
            ImageMatcher::Regex(r) => return r.is_match(value),
            ImageMatcher::Plain(n) => n,
        };
        let mut chars = value.chars();
        for p in name.chars() {
            match chars.next() {
                Some(c) if c == p || (p == '.' && c != '\n') => {}
                _ => return false,
            }
        }
        let tag_char = |c: char| c.is_ascii_alphanumeric() || "_.{}-".contains(c);
        let rest = chars.as_str();
        let rest = rest
            .strip_prefix(':')
            .map_or(rest, |r| r.trim_start_matches(tag_char));
        let rest = rest
            .strip_prefix("@sha256:")
            .map_or(rest, |r| r.trim_start_matches(tag_char));
        rest.is_empty()
    }
}

fn update_image(value: &str, args: &ImageArgs, matcher: &ImageMatcher) -> Option<String> {
    if !matcher.is_match(value) {
        return None;
    }
    let (mut name, mut tag, mut digest) = split_image(value);
    if !args.new_name.is_empty() {
        name = args.new_name.clone();
    }
    if !args.new_tag.is_empty() && !args.digest.is_empty() {
        tag = args.new_tag.clone();
        digest = args.digest.clone();
    } else if !args.new_tag.is_empty() {
        tag = args.new_tag.clone();
        digest.clear();
    } else if !args.digest.is_empty() {
        tag.clear();
        digest = args.digest.clone();
    } else if !args.tag_suffix.is_empty() {
        // Only without a new tag or digest (`api/filters/imagetag/updater.go`).
        tag.push_str(&args.tag_suffix);
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    Some(name)
}

fn legacy_images(v: &mut Value, args: &ImageArgs, matcher: &ImageMatcher) {
    match v {
        Value::Map(m) => {
            for (k, child) in m.iter_mut() {
                if k == "containers" || k == "initContainers" {
                    if let Value::Seq(items) = child {
                        for it in items.iter_mut() {
                            if let Some(Value::String(img)) = it.get_mut("image") {
                                if let Some(n) = update_image(img, args, matcher) {
                                    *img = n;
                                }
                            }
                        }
                    }
                }
                legacy_images(child, args, matcher);
            }
        }
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|i| legacy_images(i, args, matcher)),
        _ => {}
    }
}

/// One `images` entry over all resources: every `containers`/`initContainers` image in the
/// object (kustomize's legacy filter), then the image field specs. CRDs are skipped.
///
/// # Errors
/// Field specs that hit non-scalars.
pub fn images(
    args: &ImageArgs,
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    // `image.IsImageMatched` (`api/image/image.go`): the name, an optional tag, an optional
    // digest (`nginx`, `nginx:1.2`, `nginx@sha256:...`, `nginx:1.2@sha256:...`).
    let Some(matcher) = ImageMatcher::new(&args.name) else {
        return Ok(());
    };
    for r in resources.iter_mut() {
        if r.kind() == "CustomResourceDefinition" {
            continue;
        }
        legacy_images(&mut r.obj, args, &matcher);
        let gvk = r.gvk();
        for fs in specs.iter().filter(|fs| gvk.is_selected_by(&fs.gvk)) {
            apply(&mut r.obj, fs, CreateKind::None, &mut |n: &mut Value| {
                if let Value::String(s) = n {
                    if let Some(u) = update_image(s, args, &matcher) {
                        *s = u;
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// One `replicas` entry: sets the count on resources of that name whose kind has a
/// replicas field spec.
///
/// # Errors
/// When no resource matches any replicas field spec.
pub fn replicas(
    entry: &Value,
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    let name = entry
        .get("name")
        .and_then(Value::scalar_string)
        .unwrap_or_default();
    let count = entry.get("count").cloned().unwrap_or(Value::Int(0));
    let mut found = false;
    for fs in specs {
        for r in resources.iter_mut() {
            let hit = r
                .prev_ids()
                .iter()
                .any(|id| id.name == name && id.gvk.is_selected_by(&fs.gvk));
            if !hit {
                continue;
            }
            found = true;
            apply(&mut r.obj, fs, CreateKind::Scalar, &mut |n: &mut Value| {
                *n = count.clone();
                Ok(())
            })?;
        }
    }
    if !found {
        let gvks: Vec<String> = specs.iter().map(|f| Gvk::sort_string(&f.gvk)).collect();
        return Err(Error::field(
            "",
            format!(
                "resource with name {name} does not match a config with the following GVK {gvks:?}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod image_matcher_tests {
    use super::ImageMatcher;

    #[test]
    fn plain_names_match_as_the_upstream_regex_does() {
        let m = ImageMatcher::new("docker.io/nginx").expect("matcher");
        let r = ImageMatcher::Regex(
            regex::Regex::new("^docker.io/nginx(:[a-zA-Z0-9_.{}-]*)?(@sha256:[a-zA-Z0-9_.{}-]*)?$")
                .expect("regex"),
        );
        for v in [
            "docker.io/nginx",
            "docker.io/nginx:1.2",
            "docker.io/nginx@sha256:abc",
            "docker.io/nginx:1.2@sha256:abc",
            "dockerXio/nginx:1",
            "docker.io/nginx-x",
            "docker.io/nginx:1:2",
            "docker.io/ngin",
            "docker\nio/nginx",
            "docker.io/nginx:{{tag}}",
        ] {
            assert_eq!(m.is_match(v), r.is_match(v), "{v}");
        }
    }
}
