//! The in-memory document tree every stage of the engine works on.
//!
//! kustomize keeps kyaml `RNode`s, but everything it prints goes through
//! `Resource.AsYAML` (`json.Marshal` → `sigs.k8s.io/yaml.JSONToYAML`), which drops comments,
//! styles and key order. A typed tree with the JSON data model (plus the int/float split that
//! go-yaml keeps) is therefore all the state the output depends on.

use indexmap::IndexMap;

/// A mapping with insertion order kept (order matters for list merges and for FIFO
/// processing; printed output sorts keys anyway), hashed with foldhash (a per-process seed;
/// several times cheaper than SipHash on the short keys of manifests). Make one with
/// `Mapping::default()`.
pub type Mapping = IndexMap<String, Value, foldhash::fast::RandomState>;

/// One YAML/JSON node after scalar resolution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~`, or an empty value.
    Null,
    /// `true` / `false` (YAML 1.2 core schema spellings only, as go-yaml v3 reads them).
    Bool(bool),
    /// A signed integer that fits 64 bits.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    Uint(u64),
    /// A float (never an integral JSON number: see [`crate::yaml::emit`]).
    Float(f64),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping from string keys.
    Map(Mapping),
}

impl Value {
    /// An empty mapping.
    pub fn map() -> Value {
        Value::Map(Mapping::default())
    }

    /// The string content, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Mapping> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutably, if this is one.
    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence, if this is one.
    pub fn as_seq(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The sequence, mutably, if this is one.
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Child of a mapping by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Child of a mapping by key, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }

    /// Follows a path of mapping keys.
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self;
        for k in path {
            cur = cur.get(k)?;
        }
        Some(cur)
    }

    /// String at a path of mapping keys.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.get_path(path).and_then(Value::as_str)
    }

    /// Follows a path of mapping keys, creating empty mappings where missing or null.
    /// Returns `None` when a non-mapping value is in the way.
    pub fn ensure_map_path(&mut self, path: &[&str]) -> Option<&mut Mapping> {
        let mut cur = self;
        for k in path {
            let m = cur.as_map_mut()?;
            let entry = m.entry((*k).to_string()).or_insert_with(Value::map);
            if entry.is_null() {
                *entry = Value::map();
            }
            cur = entry;
        }
        cur.as_map_mut()
    }

    /// The entries of the map at key `k` as (key, scalar string) pairs, in order; empty when
    /// `k` is missing or not a map (e.g. a generator's `options.labels`).
    pub fn string_pairs(&self, k: &str) -> Vec<(String, String)> {
        self.get(k)
            .and_then(Value::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.scalar_string().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The scalar rendered as kustomize's `GetString`/field value reads it: strings as is,
    /// numbers and booleans in their YAML spelling. `None` for collections and null.
    pub fn scalar_string(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Uint(u) => Some(u.to_string()),
            Value::Float(f) => Some(crate::yaml::emit::format_float_g(*f)),
            _ => None,
        }
    }

    /// A short name of the node kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Uint(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
