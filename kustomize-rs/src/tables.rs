//! The reference data compiled into static tables by `build.rs` (from `data/`).

/// A field spec row of a default table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Group selector.
    pub group: &'static str,
    /// Version selector.
    pub version: &'static str,
    /// Kind selector.
    pub kind: &'static str,
    /// Slash-separated path.
    pub path: &'static str,
    /// Create when missing.
    pub create: bool,
}

/// The strategic-merge facts of one field of an OpenAPI definition.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The definition of the value, of the items (arrays) or of the map values.
    pub target: Option<&'static str>,
    /// An array field.
    pub array: bool,
    /// A map of objects.
    pub map_values: bool,
    /// `x-kubernetes-patch-strategy` ("" when absent).
    pub strategy: &'static str,
    /// Merge keys.
    pub keys: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// Looks up a key in a table sorted by its first column.
pub fn lookup<'a, T>(table: &'a [(&'static str, T)], key: &str) -> Option<&'a T> {
    table
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| &table[i].1)
}

/// Looks up a key in a small unsorted table.
pub fn lookup_unsorted<T: Copy>(table: &[(&'static str, T)], key: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}
