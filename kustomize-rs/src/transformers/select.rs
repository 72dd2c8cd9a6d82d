//! Target selectors for `patches`, `replacements` and friends (`api/types/selector.go`,
//! `api/resmap/reswrangler.go` `Select`), and Kubernetes label selectors
//! (`k8s.io/apimachinery/pkg/labels/selector.go` syntax).

use crate::resource::Resource;
use crate::yaml::Value;
use crate::Error;
use regex::Regex;

/// A compiled selector. Every field is an anchored regular expression; empty matches all.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Option<LabelSelector>,
    annotations: Option<LabelSelector>,
}

fn anchored(v: Option<&Value>, field: &str) -> Result<Option<Regex>, Error> {
    match v.and_then(Value::scalar_string).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Regex::new(&format!("^(?:{s})$")).map(Some).map_err(|e| {
            Error::selector(
                &s,
                format!("selector {field} '{s}' is not a valid regular expression: {e}"),
            )
        }),
    }
}

impl Selector {
    /// Compiles a selector mapping (`group`, `version`, `kind`, `name`, `namespace`,
    /// `labelSelector`, `annotationSelector`).
    ///
    /// # Errors
    /// Invalid regular expressions or label selector syntax.
    pub fn from_value(v: &Value) -> Result<Selector, Error> {
        let ls = |k: &str| -> Result<Option<LabelSelector>, Error> {
            match v
                .get(k)
                .and_then(Value::scalar_string)
                .filter(|s| !s.is_empty())
            {
                None => Ok(None),
                Some(s) => LabelSelector::parse(&s).map(Some),
            }
        };
        Ok(Selector {
            group: anchored(v.get("group"), "group")?,
            version: anchored(v.get("version"), "version")?,
            kind: anchored(v.get("kind"), "kind")?,
            name: anchored(v.get("name"), "name")?,
            namespace: anchored(v.get("namespace"), "namespace")?,
            labels: ls("labelSelector")?,
            annotations: ls("annotationSelector")?,
        })
    }

    /// Whether the selector picks the resource: original or current namespace and name,
    /// current GVK, labels and annotations.
    pub fn matches(&self, r: &Resource) -> bool {
        let m = |re: &Option<Regex>, s: &str| re.as_ref().is_none_or(|re| re.is_match(s));
        let cur = r.cur_id();
        let org = r.org_id();
        if !(m(&self.namespace, org.effective_namespace())
            || m(&self.namespace, cur.effective_namespace()))
        {
            return false;
        }
        if !(m(&self.name, &org.name) || m(&self.name, &cur.name)) {
            return false;
        }
        let gvk = r.gvk();
        if !(m(&self.group, &gvk.group)
            && m(&self.version, &gvk.version)
            && m(&self.kind, &gvk.kind))
        {
            return false;
        }
        if let Some(ls) = &self.labels {
            if !ls.matches(&r.string_map("labels")) {
                return false;
            }
        }
        if let Some(ls) = &self.annotations {
            if !ls.matches(&r.string_map("annotations")) {
                return false;
            }
        }
        true
    }
}

#[derive(Clone, Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
#[derive(Clone, Debug)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    /// Parses the string form.
    ///
    /// # Errors
    /// On malformed requirements.
    pub fn parse(s: &str) -> Result<LabelSelector, Error> {
        let bad = || {
            Error::selector(
                s,
                format!("unable to parse requirement: invalid label selector '{s}'"),
            )
        };
        let mut reqs = Vec::new();
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let set = |rest: &str| -> Result<Vec<String>, Error> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                Ok(inner
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect())
            };
            if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some(i) = p.find(" notin ") {
                reqs.push(Req::NotIn(p[..i].trim().into(), set(&p[i + 7..])?));
            } else if let Some(i) = p.find(" in ") {
                reqs.push(Req::In(p[..i].trim().into(), set(&p[i + 4..])?));
            } else if p.contains(' ') || p.contains('(') {
                return Err(bad());
            } else {
                reqs.push(Req::Exists(p.to_string()));
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let get = |k: &str| {
            labels
                .iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.as_str())
        };
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}
