//! The builtin transformers, one module per family.

pub mod meta;
pub mod nameref;
pub mod patch;
pub mod replacements;
pub mod select;
pub mod valueadd;
pub mod vars;
