//! YAML in and out, with kustomize's exact semantics: go-yaml v3 reading, go-yaml v2
//! (via JSON) writing.

pub mod emit;
pub mod parse;
pub mod value;

pub use emit::{to_yaml, EmitError};
pub use parse::{parse_documents, parse_one, YamlError};
pub use value::{Mapping, Value};
