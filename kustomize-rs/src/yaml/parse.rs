//! YAML input: a multi-document stream → [`Value`]s, resolved as go-yaml v3 resolves them
//! when kyaml decodes a node into `interface{}` (`yaml.v3/resolve.go`, `decode.go`).
//!
//! Rules kept from go-yaml v3:
//! - plain scalars: `null`/`Null`/`NULL`/`~`/empty → null; `true|True|TRUE|false|False|FALSE`
//!   → bool (not YAML 1.1's `yes`/`on`); `.inf`/`.nan` spellings → float; integers by Go's
//!   `strconv.ParseInt(s, 0, 64)` after removing `_` (so `0x1F`, `0o17`, `0b11`, and the
//!   YAML 1.1 octal `017`); then unsigned; then floats matching
//!   `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`; anything else is a string
//!   (timestamps stay strings when decoded into `interface{}`);
//! - quoted and block scalars are strings; `!!str`/`!!int`/`!!float`/`!!bool`/`!!null` tags
//!   force the type; unknown tags leave the scalar a string;
//! - aliases expand to a copy of the anchored node; `<<` merge keys merge mappings without
//!   overriding explicit keys; a repeated key is an error.

use super::value::{Mapping, Value};
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// A YAML syntax or structure error, with the 1-based line and column where it was found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("yaml: line {line}, column {col}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

fn err_at(span: &Span, message: impl Into<String>) -> YamlError {
    YamlError {
        line: span.start.line(),
        col: span.start.col() + 1,
        message: message.into(),
    }
}

/// Parses every document of a YAML stream. Documents that are empty (only comments, or
/// `---` with nothing after it) come back as [`Value::Null`].
///
/// # Errors
/// [`YamlError`] for malformed YAML, unknown aliases, repeated keys, or a `!!int`-style tag
/// whose scalar does not fit it.
pub fn parse_documents(src: &str) -> Result<Vec<Value>, YamlError> {
    parse_documents_with(src, false)
}

/// Parses like [`parse_documents`], but a repeated mapping key replaces the earlier value
/// instead of failing, as go-yaml v2 (`sigs.k8s.io/yaml`, which reads kustomization files)
/// does.
///
/// # Errors
/// As [`parse_documents`], less repeated keys.
pub fn parse_documents_lenient(src: &str) -> Result<Vec<Value>, YamlError> {
    parse_documents_with(src, true)
}

fn parse_documents_with(src: &str, allow_duplicates: bool) -> Result<Vec<Value>, YamlError> {
    let mut p = Builder {
        allow_duplicates,
        parser: Parser::new_from_str(src),
        anchors: HashMap::new(),
        eof_without_break: if src.ends_with(['\n', '\r']) {
            None
        } else {
            Some(src.chars().count())
        },
    };
    let mut docs = Vec::new();
    loop {
        let (ev, span) = p.next()?;
        match ev {
            Event::StreamStart | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                let (ev, span) = p.next()?;
                if matches!(ev, Event::DocumentEnd) {
                    docs.push(Value::Null);
                    continue;
                }
                let v = p.node(ev, span)?;
                docs.push(v);
                let (end, span) = p.next()?;
                if !matches!(end, Event::DocumentEnd) {
                    return Err(err_at(&span, "expected end of document"));
                }
            }
            _ => return Err(err_at(&span, "unexpected event outside of a document")),
        }
    }
    Ok(docs)
}

/// Parses a stream that must hold exactly one document (an empty stream is `Null`).
///
/// # Errors
/// As [`parse_documents`].
pub fn parse_one(src: &str) -> Result<Value, YamlError> {
    let mut docs = parse_documents(src)?;
    Ok(if docs.is_empty() {
        Value::Null
    } else {
        docs.swap_remove(0)
    })
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Value>,
    /// The input's length in characters when it does not end in a line break: a block
    /// scalar running to such an end has no final line break in libyaml (and go-yaml).
    eof_without_break: Option<usize>,
    /// Repeated keys replace earlier ones instead of failing.
    allow_duplicates: bool,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(x)) => Ok(x),
            Some(Err(e)) => Err(YamlError {
                line: e.marker().line(),
                col: e.marker().col() + 1,
                message: e.info().to_string(),
            }),
            None => Err(YamlError {
                line: 0,
                col: 0,
                message: "unexpected end of stream".into(),
            }),
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Value, YamlError> {
        match ev {
            Event::Alias(id) => self
                .anchors
                .get(&id)
                .cloned()
                .ok_or_else(|| err_at(&span, "unknown anchor referenced")),
            Event::Scalar(mut text, style, anchor, tag) => {
                let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                if block && Some(span.end.index()) == self.eof_without_break && text.ends_with('\n')
                {
                    text.to_mut().pop();
                }
                let v =
                    resolve_scalar(text, style, tag.as_deref()).map_err(|m| err_at(&span, m))?;
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, sp)?);
                }
                let v = Value::Seq(items);
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            Event::MappingStart(anchor, _tag) => {
                let mut m = Mapping::default();
                let mut merges: Vec<Value> = Vec::new();
                loop {
                    let (kev, ksp) = self.next()?;
                    if matches!(kev, Event::MappingEnd) {
                        break;
                    }
                    let is_merge =
                        matches!(&kev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
                    let key = self.node(kev, ksp)?;
                    let (vev, vsp) = self.next()?;
                    let val = self.node(vev, vsp)?;
                    if is_merge {
                        merges.push(val);
                        continue;
                    }
                    let key = key_string(key).map_err(|msg| err_at(&ksp, msg))?;
                    match m.entry(key) {
                        indexmap::map::Entry::Occupied(o) if !self.allow_duplicates => {
                            let msg = format!("mapping key {:?} already defined", o.key());
                            return Err(err_at(&ksp, msg));
                        }
                        indexmap::map::Entry::Occupied(mut o) => {
                            o.insert(val);
                        }
                        indexmap::map::Entry::Vacant(v) => {
                            v.insert(val);
                        }
                    }
                }
                for merge in merges {
                    let sources = match merge {
                        Value::Map(mm) => vec![mm],
                        Value::Seq(items) => items
                            .into_iter()
                            .map(|i| match i {
                                Value::Map(mm) => Ok(mm),
                                _ => Err(err_at(
                                    &span,
                                    "map merge requires map or sequence of maps as the value",
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(err_at(
                                &span,
                                "map merge requires map or sequence of maps as the value",
                            ))
                        }
                    };
                    for src in sources {
                        for (k, v) in src {
                            m.entry(k).or_insert(v);
                        }
                    }
                }
                let v = Value::Map(m);
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            _ => Err(err_at(&span, "unexpected YAML event")),
        }
    }
}

fn key_string(key: Value) -> Result<String, String> {
    match key {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Map(_) | Value::Seq(_) => Err("invalid map key: a collection".into()),
        other => Ok(other.scalar_string().unwrap_or_default()),
    }
}

const CORE: &str = "tag:yaml.org,2002:";

fn resolve_scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Value, String> {
    if let Some(tag) = tag {
        let full = format!("{}{}", tag.handle, tag.suffix);
        let core = full.strip_prefix(CORE).or_else(|| full.strip_prefix("!!"));
        return match core {
            Some("str") => Ok(Value::String(text.into_owned())),
            Some("null") => Ok(Value::Null),
            Some("bool") => match resolve_plain(&text) {
                v @ Value::Bool(_) => Ok(v),
                _ => Err(format!("cannot decode !!str `{text}` as a !!bool")),
            },
            Some("int") => match resolve_plain(&text) {
                v @ (Value::Int(_) | Value::Uint(_)) => Ok(v),
                _ => Err(format!("cannot decode !!str `{text}` as a !!int")),
            },
            Some("float") => match resolve_plain(&text) {
                Value::Int(i) => Ok(Value::Float(i as f64)),
                Value::Uint(u) => Ok(Value::Float(u as f64)),
                v @ Value::Float(_) => Ok(v),
                _ => Err(format!("cannot decode !!str `{text}` as a !!float")),
            },
            // Unknown and non-specific tags (`!`, `!foo`, `!!binary`, `!!timestamp`) leave
            // the scalar's text.
            _ if style == ScalarStyle::Plain && tag.handle.is_empty() => {
                Ok(resolve_plain_text(text))
            }
            _ => Ok(Value::String(text.into_owned())),
        };
    }
    match style {
        ScalarStyle::Plain => Ok(resolve_plain_text(text)),
        _ => Ok(Value::String(text.into_owned())),
    }
}

/// Resolves a plain scalar per go-yaml v3 (`resolve.go`), as decoded into `interface{}`.
pub fn resolve_plain(s: &str) -> Value {
    resolve_plain_text(Cow::Borrowed(s))
}

/// [`resolve_plain`] of text that may be owned already (the parser's): a string keeps it.
fn resolve_plain_text(text: Cow<'_, str>) -> Value {
    let s: &str = &text;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => {
            if let Some(f) = parse_go_float(s) {
                return Value::Float(f);
            }
        }
        b'0'..=b'9' | b'+' | b'-' => {
            let plain: String = s.chars().filter(|c| *c != '_').collect();
            if let Some(v) = parse_go_int(&plain) {
                return v;
            }
            if is_yaml_float(&plain) {
                if let Some(f) = parse_go_float(&plain) {
                    return Value::Float(f);
                }
            }
        }
        _ => {}
    }
    Value::String(text.into_owned())
}

/// `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)`.
pub(crate) fn parse_go_int(s: &str) -> Option<Value> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = s.starts_with(['+', '-']);
    let (radix, digits) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, r)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, r)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, r)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= (i64::MAX as u128) + 1 {
            return Some(Value::Int((-(mag as i128)) as i64));
        }
        return None;
    }
    if mag <= i64::MAX as u128 {
        return Some(Value::Int(mag as i64));
    }
    if !signed && mag <= u64::MAX as u128 {
        return Some(Value::Uint(mag as u64));
    }
    None
}

/// The float syntax go-yaml accepts before calling `ParseFloat`.
pub(crate) fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start = i;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d {
            return false;
        }
    } else {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d {
            return false;
        }
    }
    i == b.len()
}

/// `strconv.ParseFloat(s, 64)` for decimal syntax; `None` on syntax or range errors.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    if !is_yaml_float(s) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() {
        return None;
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_scalars_like_go_yaml_v3() {
        assert_eq!(resolve_plain("yes"), Value::String("yes".into()));
        assert_eq!(resolve_plain("True"), Value::Bool(true));
        assert_eq!(resolve_plain("017"), Value::Int(15));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("08"), Value::Float(8.0));
        assert_eq!(resolve_plain("1.5e3"), Value::Float(1500.0));
        assert_eq!(resolve_plain("18446744073709551615"), Value::Uint(u64::MAX));
        assert_eq!(
            resolve_plain("2001-12-14"),
            Value::String("2001-12-14".into())
        );
        assert_eq!(resolve_plain("-"), Value::String("-".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
    }

    #[test]
    fn anchors_merge_keys_and_duplicates() {
        let docs = parse_documents("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  q: 3\n").unwrap();
        let b = docs[0].get("b").unwrap();
        assert_eq!(b.get("p"), Some(&Value::Int(1)));
        assert_eq!(b.get("q"), Some(&Value::Int(3)));
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("already defined"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn quoted_and_tagged_scalars_are_strings() {
        let d = parse_one("a: '1'\nb: !!str 2\nc: \"true\"\nd: !!int '5'\n").unwrap();
        assert_eq!(d.get("a"), Some(&Value::String("1".into())));
        assert_eq!(d.get("b"), Some(&Value::String("2".into())));
        assert_eq!(d.get("c"), Some(&Value::String("true".into())));
        assert_eq!(d.get("d"), Some(&Value::Int(5)));
    }

    #[test]
    fn block_scalar_at_end_of_input_has_no_final_break() {
        assert_eq!(
            parse_one("a: |\n  x\n  y").unwrap().get("a"),
            Some(&Value::from("x\ny"))
        );
        assert_eq!(
            parse_one("a: |\n  x\n  y\n").unwrap().get("a"),
            Some(&Value::from("x\ny\n"))
        );
    }

    #[test]
    fn malformed_yaml_is_an_error_not_a_panic() {
        for bad in [
            "a: [1, 2",
            "a:\n  - b\n c: d",
            "{{{",
            "a: *nope",
            "- a\nb: c",
        ] {
            assert!(parse_documents(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse_documents("# only a comment\n").unwrap().len(), 0);
    }
}
