//! Which fields an object may carry, and what a custom resource's schema allows: the test
//! server's version of kube-apiserver's decoding and validation.
//!
//! - Builtin kinds: the field table `data/schema-v1.36.txt`, derived from k8s-openapi's
//!   `v1_36` module (itself generated from the Kubernetes v1.36 OpenAPI document) by
//!   `data/derive-schema.py`. A field the table does not list for its type is unknown — the
//!   typed decoder drops it (`k8s.io/apimachinery/pkg/runtime/serializer/json`, strict mode
//!   reports it).
//! - Custom resources: the CRD's structural schema (`properties`, `additionalProperties`,
//!   `items`, `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-embedded-resource`), as
//!   `k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning` prunes, and the value
//!   checks of `k8s.io/kube-openapi/pkg/validation/validate` (type, enum, minimum/maximum,
//!   length, pattern, items, required) with their messages.
//!
//! Types the table has no entry for (Quantity, IntOrString, Time, RawExtension, JSON) are
//! opaque: anything goes below them.

use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../data/schema-v1.36.txt");
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// One step of a path to a field: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A field.
    Field(String),
    /// A list item.
    Item(usize),
}

/// `(fields by definition: json name → value's definition), (apiVersion, kind) → definition`.
type Tables = (
    HashMap<&'static str, HashMap<&'static str, Option<&'static str>>>,
    HashMap<(&'static str, &'static str), &'static str>,
);

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let (mut types, mut kinds) = (HashMap::new(), HashMap::new());
        for line in TABLE.lines().filter(|l| !l.starts_with('#')) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("kind") => {
                    if let (Some(av), Some(k), Some(d)) = (words.next(), words.next(), words.next())
                    {
                        kinds.insert((av, k), d);
                    }
                }
                Some(def) => {
                    let fields = words
                        .map(|w| match w.split_once('=') {
                            Some((f, t)) => (f, Some(t)),
                            None => (w, None),
                        })
                        .collect();
                    types.insert(def, fields);
                }
                None => {}
            }
        }
        (types, kinds)
    })
}

/// Whether `apiVersion`/`kind` is a builtin kind the field table knows.
pub fn is_builtin(api_version: &str, kind: &str) -> bool {
    tables().1.contains_key(&(api_version, kind))
}

/// The fields of `obj` its schema does not declare, as paths (in the object's order). For a
/// custom resource `crd_schema` is its version's `openAPIV3Schema`; builtin kinds use the
/// field table; a kind neither knows has no unknown fields.
pub fn unknown_fields(
    api_version: &str,
    kind: &str,
    obj: &Json,
    crd_schema: Option<&Json>,
) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    if let Some(s) = crd_schema {
        crd_walk(obj, s, true, &mut path, &mut out);
    } else if let Some(def) = tables().1.get(&(api_version, kind)) {
        builtin_walk(obj, def, &mut path, &mut out);
    }
    out
}

/// The values of a builtin object whose schema is definition `ty` (e.g.
/// `io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime`), with their paths, in the object's order.
/// Empty for kinds the field table does not know.
pub fn values_of_type<'a>(
    api_version: &str,
    kind: &str,
    obj: &'a Json,
    ty: &str,
) -> Vec<(Vec<Seg>, &'a Json)> {
    fn walk<'a>(
        v: &'a Json,
        def: &str,
        ty: &str,
        path: &mut Vec<Seg>,
        out: &mut Vec<(Vec<Seg>, &'a Json)>,
    ) {
        if def == ty {
            out.push((path.clone(), v));
            return;
        }
        match v {
            Json::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Item(i));
                    walk(it, def, ty, path, out);
                    path.pop();
                }
            }
            Json::Object(m) => {
                let Some(fields) = tables().0.get(def) else {
                    return;
                };
                for (k, c) in m {
                    let Some(Some(t)) = fields.get(k.as_str()) else {
                        continue;
                    };
                    path.push(Seg::Field(k.clone()));
                    match t.strip_prefix('*') {
                        Some(t) => {
                            for (mk, mv) in c.as_object().into_iter().flatten() {
                                path.push(Seg::Field(mk.clone()));
                                walk(mv, t, ty, path, out);
                                path.pop();
                            }
                        }
                        None => walk(c, t, ty, path, out),
                    }
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(def) = tables().1.get(&(api_version, kind)) {
        walk(obj, def, ty, &mut Vec::new(), &mut out);
    }
    out
}

fn builtin_walk(v: &Json, def: &str, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    let (Some(fields), Json::Object(m)) = (tables().0.get(def), v) else {
        return; // opaque, or not an object
    };
    for (k, c) in m {
        path.push(Seg::Field(k.clone()));
        match fields.get(k.as_str()) {
            None => out.push(path.clone()),
            Some(Some(t)) => match t.strip_prefix('*') {
                // A map of typed values (`map[string]T`).
                Some(t) => {
                    for (mk, mv) in c.as_object().into_iter().flatten() {
                        path.push(Seg::Field(mk.clone()));
                        builtin_value(mv, t, path, out);
                        path.pop();
                    }
                }
                None => builtin_value(c, t, path, out),
            },
            Some(None) => {}
        }
        path.pop();
    }
}

/// A value whose schema is `def`: the object itself, or each item of a list of them.
fn builtin_value(v: &Json, def: &str, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Json::Array(items) => {
            for (i, it) in items.iter().enumerate() {
                path.push(Seg::Item(i));
                builtin_value(it, def, path, out);
                path.pop();
            }
        }
        _ => builtin_walk(v, def, path, out),
    }
}

fn crd_walk(v: &Json, s: &Json, top: bool, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true));
    let embedded = s.get("x-kubernetes-embedded-resource") == Some(&Json::Bool(true));
    match v {
        Json::Object(m) => {
            let props = s.get("properties").and_then(Json::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                path.push(Seg::Field(k.clone()));
                if (top || embedded) && matches!(k.as_str(), "apiVersion" | "kind") {
                } else if (top || embedded) && k == "metadata" {
                    builtin_walk(c, OBJECT_META, path, out);
                } else if let Some(p) = props.and_then(|p| p.get(k)) {
                    crd_walk(c, p, false, path, out);
                } else if let Some(a) = additional {
                    crd_walk(c, a, false, path, out);
                } else if !preserve && s.get("additionalProperties") != Some(&Json::Bool(true)) {
                    out.push(path.clone());
                }
                path.pop();
            }
        }
        Json::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Item(i));
                    crd_walk(it, is, false, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// Removes the fields at `paths` (as [`unknown_fields`] gives them) from `obj`: what the
/// decoder (builtins) or pruning (custom resources) drops.
pub fn prune(obj: &mut Json, paths: &[Vec<Seg>]) {
    fn node<'a>(v: &'a mut Json, path: &[Seg]) -> Option<&'a mut Json> {
        let Some((first, rest)) = path.split_first() else {
            return Some(v);
        };
        let next = match (first, v) {
            (Seg::Field(f), Json::Object(m)) => m.get_mut(f)?,
            (Seg::Item(i), Json::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
        node(next, rest)
    }
    for p in paths {
        if let Some((Seg::Field(last), parent)) = p.split_last() {
            if let Some(Json::Object(m)) = node(obj, parent) {
                m.shift_remove(last);
            }
        }
    }
}

/// A path as the decoder words it: `spec.template.spec.containers[0].bogus`.
pub fn dotted(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(f);
            }
            Seg::Item(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// One rejected value of a custom resource: `(field, reason, message)` as a 422 cause.
pub type Violation = (String, &'static str, String);

/// Checks a custom resource against its CRD's schema (everything but unknown fields, which
/// [`unknown_fields`] finds): messages as kube-openapi's `validate` package words them, e.g.
/// `spec.size in body should be greater than or equal to 1`, and enums as
/// `Unsupported value: "green": supported values: "red", "blue"`.
pub fn validate_crd(obj: &Json, schema: &Json) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Json::as_object) {
        if let Json::Object(m) = obj {
            for (k, c) in m {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(p) = props.get(k) {
                    path.push(Seg::Field(k.clone()));
                    check(c, p, &mut path, &mut out);
                    path.pop();
                }
            }
        }
    }
    out
}

fn go_number(v: &Json) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

fn check(v: &Json, s: &Json, path: &mut Vec<Seg>, out: &mut Vec<Violation>) {
    let at = dotted(path);
    let invalid = |msg: String| {
        (
            at.clone(),
            "FieldValueInvalid",
            format!("Invalid value: {}: {msg}", go_value(v)),
        )
    };
    if v.is_null() && s.get("nullable") == Some(&Json::Bool(true)) {
        return;
    }
    if let Some(t) = s.get("type").and_then(Json::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            _ => true,
        };
        let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true));
        if !ok && !(int_or_string && (v.is_string() || v.is_i64())) {
            out.push((
                at.clone(),
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: {}: {at} in body must be of type {t}: {:?}",
                    go_value(v),
                    json_type(v)
                ),
            ));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Json::as_array) {
        if !e.contains(v) {
            let supported: Vec<String> = e.iter().map(|x| x.to_string()).collect();
            out.push((
                at.clone(),
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {}: supported values: {}",
                    v,
                    supported.join(", ")
                ),
            ));
        }
    }
    if let Some(x) = v.as_f64() {
        // (bound, its exclusive flag, whether x must be above it, the words for each case)
        let bounds = [
            ("minimum", "exclusiveMinimum", true, "greater than"),
            ("maximum", "exclusiveMaximum", false, "less than"),
        ];
        for (key, exclusive, above, words) in bounds {
            let Some(bound) = s.get(key).filter(|b| b.is_number()) else {
                continue;
            };
            let b = bound.as_f64().unwrap_or(0.0);
            let exclusive = s.get(exclusive) == Some(&Json::Bool(true));
            let outside = if above { x < b } else { x > b };
            if outside || (exclusive && x == b) {
                let how = if exclusive {
                    words.to_string()
                } else {
                    format!("{words} or equal to")
                };
                out.push(invalid(format!(
                    "{at} in body should be {how} {}",
                    go_number(bound)
                )));
            }
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(n) = s
            .get("maxLength")
            .and_then(Json::as_u64)
            .filter(|n| len > *n)
        {
            out.push((
                at.clone(),
                "TooLong",
                format!("Too long: may not be more than {n} bytes"),
            ));
        }
        if let Some(n) = s
            .get("minLength")
            .and_then(Json::as_u64)
            .filter(|n| len < *n)
        {
            out.push(invalid(format!(
                "{at} in body should be at least {n} chars long"
            )));
        }
        if let Some(p) = s.get("pattern").and_then(Json::as_str) {
            if regex::Regex::new(p).is_ok_and(|re| !re.is_match(text)) {
                out.push(invalid(format!("{at} in body should match '{p}'")));
            }
        }
    }
    match v {
        Json::Object(m) => {
            for req in s
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = req.as_str().filter(|r| !m.contains_key(*r)) {
                    let field = if at.is_empty() {
                        r.to_string()
                    } else {
                        format!("{at}.{r}")
                    };
                    out.push((field, "FieldValueRequired", "Required value".into()));
                }
            }
            let props = s.get("properties").and_then(Json::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                let sub = props.and_then(|p| p.get(k)).or(additional);
                if let Some(sub) = sub {
                    path.push(Seg::Field(k.clone()));
                    check(c, sub, path, out);
                    path.pop();
                }
            }
        }
        Json::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = s.get("maxItems").and_then(Json::as_u64).filter(|m| n > *m) {
                out.push((
                    at.clone(),
                    "TooMany",
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(min) = s.get("minItems").and_then(Json::as_u64).filter(|m| n < *m) {
                out.push(invalid(format!(
                    "{at} in body should have at least {min} items"
                )));
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Item(i));
                    check(it, is, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "number",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A value as Go's `%#v`-free error formatting prints it in `Invalid value: …`: numbers and
/// booleans bare, strings quoted.
fn go_value(v: &Json) -> String {
    match v {
        Json::Number(_) => go_number(v),
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_unknown_fields_are_found_at_any_depth() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"bogus": 1, "template": {"spec": {"containers": [{"name": "c", "imagePullPolicy": "Always", "nope": true}],
            "volumes": [{"name": "v", "configMap": {"name": "m", "defaultMode": 420}}]}}}});
        let found: Vec<String> = unknown_fields("apps/v1", "Deployment", &d, None)
            .iter()
            .map(|p| dotted(p))
            .collect();
        assert_eq!(
            found,
            ["spec.bogus", "spec.template.spec.containers[0].nope"]
        );
        let mut pruned = d.clone();
        prune(
            &mut pruned,
            &unknown_fields("apps/v1", "Deployment", &d, None),
        );
        assert!(unknown_fields("apps/v1", "Deployment", &pruned, None).is_empty());
        assert_eq!(
            pruned["spec"]["template"]["spec"]["containers"][0]["name"],
            "c"
        );
    }

    #[test]
    fn maps_of_typed_values_and_opaque_types_are_walked_right() {
        // ConfigMap data is a string map; a Service port's targetPort is IntOrString; a CRD's
        // schema properties are a map of JSONSchemaProps.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"any": "thing"}});
        assert!(unknown_fields("v1", "ConfigMap", &cm, None).is_empty());
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a"},
            "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "bogus": 1}}}}}]}});
        let found: Vec<String> = unknown_fields(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            &crd,
            None,
        )
        .iter()
        .map(|p| dotted(p))
        .collect();
        assert_eq!(
            found,
            ["spec.versions[0].schema.openAPIV3Schema.properties.spec.bogus"]
        );
    }

    #[test]
    fn custom_resources_follow_their_structural_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1}, "color": {"type": "string", "enum": ["red", "blue"]},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
        let cr = json!({"apiVersion": "g/v1", "kind": "W", "metadata": {"name": "a"}, "spec": {"size": 0, "color": "green", "shape": "round", "extra": {"free": 1}}});
        let unknown: Vec<String> = unknown_fields("g/v1", "W", &cr, Some(&schema))
            .iter()
            .map(|p| dotted(p))
            .collect();
        assert_eq!(unknown, ["spec.shape"]);
        let v = validate_crd(&cr, &schema);
        assert_eq!(
            v[0].2,
            "Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        assert_eq!(
            v[1].2,
            "Unsupported value: \"green\": supported values: \"red\", \"blue\""
        );
        let missing = validate_crd(&json!({"spec": {}}), &schema);
        assert_eq!(missing[0].0, "spec.size");
    }
}
