//! YAML output exactly as kustomize (and Helm's `toYaml`) print it.
//!
//! Both go through `sigs.k8s.io/yaml.JSONToYAML`: the object is JSON-encoded by Go's
//! `encoding/json`, decoded by go-yaml v2 into `interface{}` and re-encoded by go-yaml v2.
//! The consequences reproduced here:
//! - keys are sorted with go-yaml v2's `keyList.Less` (letters after other runes, digit runs
//!   compared as numbers) — `goyaml.v2/sorter.go`;
//! - integral floats print as integers (JSON `1.0` is `1`); other floats use Go's
//!   `strconv.FormatFloat(f, 'g', -1, 64)` (`1.2345675e+06`) — `encoding/json`, `encode.go`;
//! - strings that go-yaml v2 would read back as something else (`"true"`, `"yes"`, `"1"`,
//!   `"2001-12-14"`, `"1:20"`, `""`) are double-quoted; strings with a newline use literal
//!   block style (`|`, `|-`, `|+`, with an indentation indicator when they start with a space
//!   or newline) unless they have trailing spaces or unprintable characters
//!   — `goyaml.v2/encode.go` `stringv`, `resolve.go`;
//! - the libyaml emitter picks the final style and folds plain and quoted scalars at spaces
//!   past column 80; sequences in mappings are not indented — `goyaml.v2/emitterc.go`.

use super::value::{Mapping, Value};
use std::cmp::Ordering;

/// Serialization failure (Go's `json.Marshal` refuses NaN and infinities).
#[derive(Debug, Clone, thiserror::Error)]
#[error("json: unsupported value: {0}")]
pub struct EmitError(pub String);

/// Renders one document as `JSONToYAML` does: block style, sorted keys, ending in `\n`.
///
/// # Errors
/// [`EmitError`] when the tree holds a NaN or infinite float.
pub fn to_yaml(v: &Value) -> Result<String, EmitError> {
    let mut e = Emitter::new();
    e.emit_node(
        v,
        Ctx {
            mapping: false,
            simple_key: false,
        },
    );
    // Document end: `yaml_emitter_emit_document_end` writes an indent (a final line break).
    e.indent = -1;
    e.write_indent();
    if e.non_finite {
        // The emission noticed one; name the first in document order as `json.Marshal` does.
        check_json(v)?;
    }
    Ok(e.out)
}

fn check_json(v: &Value) -> Result<(), EmitError> {
    match v {
        Value::Float(f) if !f.is_finite() => Err(EmitError(format_float_g(*f))),
        Value::Seq(items) => items.iter().try_for_each(check_json),
        Value::Map(m) => m.values().try_for_each(check_json),
        _ => Ok(()),
    }
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)` with go-yaml's `.inf`/`.nan` spellings.
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (neg, digits, exp) = shortest_digits(f);
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    // Shortest 'g' uses exponent form when exp < -4 || exp >= 6 (eprec = 6, strconv/ftoa.go).
    if !(-4..6).contains(&exp) {
        push_exp_form(&mut s, &digits, exp);
    } else {
        push_fixed_form(&mut s, &digits, exp);
    }
    s
}

/// Decimal digits (no leading zeros) and the exponent of the first digit (`d.ddd × 10^exp`).
fn shortest_digits(f: f64) -> (bool, String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0').to_string();
    let digits = if digits.is_empty() {
        "0".to_string()
    } else {
        digits
    };
    (f < 0.0, digits, exp.parse().unwrap_or(0))
}

fn push_exp_form(s: &mut String, digits: &str, exp: i32) {
    s.push_str(&digits[..1]);
    if digits.len() > 1 {
        s.push('.');
        s.push_str(&digits[1..]);
    }
    s.push('e');
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
}

fn push_fixed_form(s: &mut String, digits: &str, exp: i32) {
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(digits);
    } else {
        let point = (exp + 1) as usize;
        if digits.len() <= point {
            s.push_str(digits);
            for _ in digits.len()..point {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..point]);
            s.push('.');
            s.push_str(&digits[point..]);
        }
    }
}

/// What a float becomes after `encoding/json` prints it and go-yaml v2 reads it back:
/// an integer when the JSON text has no fraction or exponent and fits 64 bits.
fn json_number(f: f64) -> Value {
    let abs = f.abs();
    let exp_form = abs != 0.0 && !(1e-6..1e21).contains(&abs);
    if !exp_form && f.fract() == 0.0 {
        if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
            return Value::Int(f as i64);
        }
        if (0.0..1.844_674_407_370_955_2e19).contains(&f) {
            return Value::Uint(f as u64);
        }
    }
    Value::Float(f)
}

/// go-yaml v2 `keyList.Less` for string keys.
pub fn v2_key_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    if v2_key_less(a, b) {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn v2_key_less(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return key_less_by(a.as_bytes(), b.as_bytes(), |c| {
            (*c as char).is_ascii_alphabetic()
        });
    }
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    key_less_by(&ar, &br, |c| c.is_alphabetic())
}

trait KeyChar: Copy + PartialEq + PartialOrd {
    fn digit(self) -> Option<i64>;
    fn is_zero(self) -> bool {
        self.digit() == Some(0)
    }
}

impl KeyChar for u8 {
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| (self - b'0') as i64)
    }
}

impl KeyChar for char {
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| self as i64 - '0' as i64)
    }
}

fn key_less_by<C: KeyChar>(ar: &[C], br: &[C], letter: impl Fn(&C) -> bool) -> bool {
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = letter(&ar[i]);
        let bl = letter(&br[i]);
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i].is_zero() || br[i].is_zero() {
            let mut j = i as isize - 1;
            while j >= 0 && ar[j as usize].digit().is_some() {
                if !ar[j as usize].is_zero() {
                    an = 1;
                    bn = 1;
                    break;
                }
                j -= 1;
            }
        }
        let mut ai = i;
        while let Some(d) = ar.get(ai).and_then(|c| c.digit()) {
            an = an.wrapping_mul(10).wrapping_add(d);
            ai += 1;
        }
        let mut bi = i;
        while let Some(d) = br.get(bi).and_then(|c| c.digit()) {
            bn = bn.wrapping_mul(10).wrapping_add(d);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Whether go-yaml v2 would read `s`, written plain, as something other than a string
/// (`resolve.go` plus the base-60 float check of `encode.go`).
pub fn v2_needs_quotes(s: &str) -> bool {
    let Some(&first) = s.as_bytes().first() else {
        return true; // "" resolves to null
    };
    match first {
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => matches!(
            s,
            "y" | "Y"
                | "yes"
                | "Yes"
                | "YES"
                | "true"
                | "True"
                | "TRUE"
                | "on"
                | "On"
                | "ON"
                | "n"
                | "N"
                | "no"
                | "No"
                | "NO"
                | "false"
                | "False"
                | "FALSE"
                | "off"
                | "Off"
                | "OFF"
                | "~"
                | "null"
                | "Null"
                | "NULL"
        ),
        b'.' => {
            matches!(s, ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF")
                || super::parse::parse_go_float(s).is_some()
        }
        b'+' | b'-' | b'0'..=b'9' => {
            if matches!(s, "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF") {
                return true;
            }
            if is_v2_timestamp(s) || is_base60_float(s) {
                return true;
            }
            let plain: String = s.chars().filter(|c| *c != '_').collect();
            if super::parse::parse_go_int(&plain).is_some() {
                return true;
            }
            if super::parse::is_yaml_float(&plain) {
                // ParseFloat succeeds, or fails only with a range error: both are not strings
                // only when it parses.
                if super::parse::parse_go_float(&plain).is_some() {
                    return true;
                }
            }
            if let Some(rest) = plain.strip_prefix("-0b") {
                if !rest.is_empty() && rest.chars().all(|c| c == '0' || c == '1') {
                    return true;
                }
            }
            // Integers out of 64-bit range become *big.Int.
            is_big_int(&plain)
        }
        _ => false,
    }
}

fn is_big_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (radix, digits) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, r)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, r)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, r)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

fn is_base60_float(s: &str) -> bool {
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() && i - d < 2 {
            i += 1;
        }
        match i - d {
            1 => {}
            2 if b[d] <= b'5' => {}
            2 => i = d + 1, // `[0-5]?` did not match: one digit only
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// go-yaml v2 `parseTimestamp`: `YYYY-M-D`, optionally followed by `[Tt ]h:m:s[.frac]` and,
/// for `T`/`t`, a zone `Z` or `±hh:mm`; dates must exist (Go's `time.Parse`).
fn is_v2_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let year: i32 = s[..4].parse().unwrap_or(0);
    let mut i = 5;
    let num = |i: &mut usize, max_len: usize| -> Option<u32> {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - st < max_len {
            *i += 1;
        }
        if *i == st {
            None
        } else {
            s[st..*i].parse().ok()
        }
    };
    let Some(month) = num(&mut i, 2) else {
        return false;
    };
    if i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i, 2) else {
        return false;
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let sep = b[i];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return false;
    }
    i += 1;
    let Some(h) = num(&mut i, 2) else {
        return false;
    };
    if i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    let Some(m) = num(&mut i, 2) else {
        return false;
    };
    if i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    let Some(sec) = num(&mut i, 2) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        let st = i + 1;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == st {
            return false;
        }
    }
    if sep == b' ' {
        return i == b.len();
    }
    if i < b.len() && b[i] == b'Z' {
        return i + 1 == b.len();
    }
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        let z = &s[i + 1..];
        let zb = z.as_bytes();
        return zb.len() == 5
            && zb[2] == b':'
            && zb[..2].iter().chain(&zb[3..]).all(u8::is_ascii_digit);
    }
    false
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

#[derive(Clone, Copy)]
struct Ctx {
    mapping: bool,
    simple_key: bool,
}

struct Analysis {
    multiline: bool,
    flow_plain: bool,
    block_plain: bool,
    single: bool,
    block: bool,
}

const BEST_WIDTH: usize = 80;
const BEST_INDENT: i32 = 2;

struct Emitter {
    out: String,
    column: usize,
    indent: i32,
    indents: Vec<i32>,
    whitespace: bool,
    indention: bool,
    flow_level: usize,
    /// A NaN or infinite float was met (which makes the document an error).
    non_finite: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

/// Whether the scalar is one `analyze` passes for every style without looking further: it
/// starts with a letter or digit (no leading indicator, space, break or `---`), does not end
/// with a space, and is printable ASCII with none of the characters that matter after the
/// first position (`,?[]{}:#`, tabs, breaks); inner spaces are fine without breaks. Most
/// values in manifests, and much description prose, are like this.
fn is_simple_scalar(value: &str) -> bool {
    let b = value.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last() != Some(&b' ')
        && b.iter().all(|&c| {
            (0x20..=0x7E).contains(&c)
                && !matches!(c, b',' | b'?' | b'[' | b']' | b'{' | b'}' | b':' | b'#')
        })
}

/// What [`analyze`] learns from a scalar's characters (go-yaml's `yaml_emitter_analyze_scalar`
/// loop).
struct Flags {
    line_breaks: bool,
    special: bool,
    tabs: bool,
    leading_space: bool,
    leading_break: bool,
    trailing_space: bool,
    trailing_break: bool,
    break_space: bool,
    space_break: bool,
    block_ind: bool,
    flow_ind: bool,
}

fn scan(chars: impl Iterator<Item = char>, mut block_ind: bool, mut flow_ind: bool) -> Flags {
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let mut it = chars.peekable();
    let mut i = 0usize;
    while let Some(c) = it.next() {
        let next = it.peek().copied();
        let last = next.is_none();
        let followed_by_ws = matches!(next, None | Some(' ') | Some('\t'));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    flow_ind = true;
                    block_ind = true;
                }
                '?' | ':' => {
                    flow_ind = true;
                    if followed_by_ws {
                        block_ind = true;
                    }
                }
                '-' if followed_by_ws => {
                    flow_ind = true;
                    block_ind = true;
                }
                _ => {}
            }
        } else {
            match c {
                ',' | '?' | '[' | ']' | '{' | '}' => flow_ind = true,
                ':' => {
                    flow_ind = true;
                    if followed_by_ws {
                        block_ind = true;
                    }
                }
                '#' if preceded_by_ws => {
                    flow_ind = true;
                    block_ind = true;
                }
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if last {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if last {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = c == ' ' || c == '\t' || is_break(c) || c == '\0';
        i += 1;
    }
    Flags {
        line_breaks,
        special,
        tabs,
        leading_space,
        leading_break,
        trailing_space,
        trailing_break,
        break_space,
        space_break,
        block_ind,
        flow_ind,
    }
}

fn analyze(value: &str) -> Analysis {
    if is_simple_scalar(value) {
        return Analysis {
            multiline: false,
            flow_plain: true,
            block_plain: true,
            single: true,
            block: true,
        };
    }
    if value.is_empty() {
        return Analysis {
            multiline: false,
            flow_plain: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    let (mut block_ind, mut flow_ind) = (false, false);
    if value.starts_with("---") || value.starts_with("...") {
        block_ind = true;
        flow_ind = true;
    }
    // The characters that matter are ASCII: an ASCII value is scanned byte by byte.
    let f = if value.is_ascii() {
        scan(value.bytes().map(char::from), block_ind, flow_ind)
    } else {
        scan(value.chars(), block_ind, flow_ind)
    };
    let mut a = Analysis {
        multiline: f.line_breaks,
        flow_plain: true,
        block_plain: true,
        single: true,
        block: true,
    };
    if f.leading_space || f.leading_break || f.trailing_space || f.trailing_break {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if f.trailing_space {
        a.block = false;
    }
    if f.break_space {
        a.flow_plain = false;
        a.block_plain = false;
        a.single = false;
    }
    if f.space_break || f.tabs || f.special {
        a.flow_plain = false;
        a.block_plain = false;
        a.single = false;
    }
    if f.space_break || f.special {
        a.block = false;
    }
    if f.line_breaks {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if f.flow_ind {
        a.flow_plain = false;
    }
    if f.block_ind {
        a.block_plain = false;
    }
    a
}

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            indent: -1,
            indents: Vec::new(),
            whitespace: true,
            indention: true,
            flow_level: 0,
            non_finite: false,
        }
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(&mut self, ind: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        for c in ind.chars() {
            self.put(c);
        }
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn emit_node(&mut self, v: &Value, ctx: Ctx) {
        match v {
            Value::Map(m) if m.is_empty() => self.emit_empty("{", "}"),
            Value::Seq(s) if s.is_empty() => self.emit_empty("[", "]"),
            Value::Map(m) => self.emit_block_mapping(m),
            Value::Seq(s) => self.emit_block_sequence(s, ctx),
            Value::Null => self.emit_scalar("null", Style::Plain, ctx),
            Value::Bool(b) => {
                self.emit_scalar(if *b { "true" } else { "false" }, Style::Plain, ctx)
            }
            Value::Int(i) => self.emit_scalar(&i.to_string(), Style::Plain, ctx),
            Value::Uint(u) => self.emit_scalar(&u.to_string(), Style::Plain, ctx),
            Value::Float(f) if !f.is_finite() => {
                self.non_finite = true;
                self.emit_scalar(&format_float_g(*f), Style::Plain, ctx)
            }
            Value::Float(f) => match json_number(*f) {
                Value::Int(i) => self.emit_scalar(&i.to_string(), Style::Plain, ctx),
                Value::Uint(u) => self.emit_scalar(&u.to_string(), Style::Plain, ctx),
                _ => self.emit_scalar(&format_float_g(*f), Style::Plain, ctx),
            },
            Value::String(s) => self.emit_string(s, ctx),
        }
    }

    fn emit_string(&mut self, s: &str, ctx: Ctx) {
        let style = if s.contains('\n') {
            Style::Literal
        } else if !v2_needs_quotes(s) {
            Style::Plain
        } else {
            Style::Double
        };
        self.emit_scalar(s, style, ctx);
    }

    fn emit_empty(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        self.flow_level -= 1;
        self.pop_indent();
        self.write_indicator(close, false, false, false);
    }

    fn emit_block_mapping(&mut self, m: &Mapping) {
        self.increase_indent(false, false);
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_by(|a, b| v2_key_cmp(a.0, b.0));
        for (k, v) in entries {
            self.write_indent();
            let simple = !k.contains(is_break) && k.len() <= 128;
            if simple {
                self.emit_string(
                    k,
                    Ctx {
                        mapping: true,
                        simple_key: true,
                    },
                );
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.emit_string(
                    k,
                    Ctx {
                        mapping: true,
                        simple_key: false,
                    },
                );
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.emit_node(
                v,
                Ctx {
                    mapping: true,
                    simple_key: false,
                },
            );
        }
        self.pop_indent();
    }

    fn emit_block_sequence(&mut self, s: &[Value], ctx: Ctx) {
        let indentless = ctx.mapping && !self.indention;
        self.increase_indent(false, indentless);
        for item in s {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.emit_node(
                item,
                Ctx {
                    mapping: false,
                    simple_key: false,
                },
            );
        }
        self.pop_indent();
    }

    fn emit_scalar(&mut self, value: &str, requested: Style, ctx: Ctx) {
        let a = analyze(value);
        let mut style = requested;
        if ctx.simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain {
            let allowed = if self.flow_level > 0 {
                a.flow_plain
            } else {
                a.block_plain
            };
            if !allowed || (value.is_empty() && (self.flow_level > 0 || ctx.simple_key)) {
                style = Style::Single;
            }
        }
        if style == Style::Single && !a.single {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || self.flow_level > 0 || ctx.simple_key) {
            style = Style::Double;
        }
        self.increase_indent(true, false);
        let allow_breaks = !ctx.simple_key;
        match style {
            Style::Plain => self.write_plain(value, allow_breaks),
            Style::Single => self.write_single(value, allow_breaks),
            Style::Double => self.write_double(value, allow_breaks),
            Style::Literal => self.write_literal(value),
        }
        self.pop_indent();
    }

    fn write_plain(&mut self, value: &str, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        if !value.contains(' ') {
            // Nothing to fold: the text goes out as it is.
            self.out.push_str(value);
            self.column += value.chars().count();
            self.whitespace = false;
            self.indention = false;
            return;
        }
        // Runs of non-spaces go out whole; at each space the line may fold (go-yaml's
        // `yaml_emitter_write_plain_scalar`). Spaces are ASCII, so the slices are on
        // character boundaries.
        let b = value.as_bytes();
        let mut spaces = false;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b' ' {
                let next_space = b.get(i + 1) == Some(&b' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_space {
                    self.write_indent();
                } else {
                    self.put(' ');
                }
                spaces = true;
                i += 1;
            } else {
                let start = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                let word = &value[start..i];
                self.out.push_str(word);
                self.column += if word.is_ascii() {
                    word.len()
                } else {
                    word.chars().count()
                };
                self.indention = false;
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        let mut breaks = false;
        let mut i = 0;
        while i < n {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i != n - 1
                    && chars[i + 1] != ' '
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
            i += 1;
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn write_double(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        let mut i = 0;
        while i < n {
            let c = chars[i];
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let code = c as u32;
                match code {
                    0x00 => self.put('0'),
                    0x07 => self.put('a'),
                    0x08 => self.put('b'),
                    0x09 => self.put('t'),
                    0x0A => self.put('n'),
                    0x0B => self.put('v'),
                    0x0C => self.put('f'),
                    0x0D => self.put('r'),
                    0x1B => self.put('e'),
                    0x22 => self.put('"'),
                    0x5C => self.put('\\'),
                    0x85 => self.put('N'),
                    0xA0 => self.put('_'),
                    0x2028 => self.put('L'),
                    0x2029 => self.put('P'),
                    _ => {
                        let (ch, width) = if code <= 0xFF {
                            ('x', 2)
                        } else if code <= 0xFFFF {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(ch);
                        for k in (0..width).rev() {
                            let d = (code >> (k * 4)) & 0xF;
                            self.put(char::from_digit(d, 16).unwrap_or('0').to_ascii_uppercase());
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != n - 1 {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
            i += 1;
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        // Block scalar hints (`yaml_emitter_write_block_scalar_hints`).
        let first = value.chars().next();
        if first.is_some_and(|c| c == ' ' || is_break(c)) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let mut rev = value.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(prev)) if is_break(prev) => Some("+"),
            _ => None,
        };
        if let Some(ch) = chomp {
            self.write_indicator(ch, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        // Line by line: each run between breaks goes out whole after its indent (the same
        // output as go-yaml's character loop in `yaml_emitter_write_literal_scalar`).
        let mut breaks = true;
        let mut rest = value;
        while let Some(c) = rest.chars().next() {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
                rest = &rest[c.len_utf8()..];
                continue;
            }
            if breaks {
                self.write_indent();
            }
            let cut = rest.find(is_break).unwrap_or(rest.len());
            let run = &rest[..cut];
            self.out.push_str(run);
            self.column += if run.is_ascii() {
                run.len()
            } else {
                run.chars().count()
            };
            self.indention = false;
            breaks = false;
            rest = &rest[cut..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse::parse_one;

    fn rt(src: &str) -> String {
        to_yaml(&parse_one(src).unwrap()).unwrap()
    }

    #[test]
    fn non_finite_floats_are_errors_naming_the_first_in_document_order() {
        let v = parse_one("b: [1, .inf]\na: .nan\nc: 2.5\n").expect("yaml");
        let e = to_yaml(&v).expect_err("non-finite floats");
        assert_eq!(e.to_string(), "json: unsupported value: .inf");
        assert!(to_yaml(&parse_one("a: 2.5\n").expect("yaml")).is_ok());
    }

    #[test]
    fn sorts_keys_and_quotes_like_go_yaml_v2() {
        assert_eq!(
            rt("b: 1\na: yes\nc: 'on'\nd: '123'\n"),
            "a: \"yes\"\nb: 1\nc: \"on\"\nd: \"123\"\n"
        );
        assert_eq!(
            rt("k: ': x'\ne: ''\nt: '2001-12-14'\n"),
            "e: \"\"\nk: ': x'\nt: \"2001-12-14\"\n"
        );
        assert_eq!(
            rt("a10: 1\na9: 2\na_: 3\naB: 4\n"),
            "a_: 3\na9: 2\na10: 1\naB: 4\n"
        );
    }

    #[test]
    fn floats_print_as_go_json_then_go_yaml() {
        assert_eq!(
            rt("a: 1.0\nb: 1.5\nc: 1234567.5\nd: 0.0000001\ne: 1e21\n"),
            "a: 1\nb: 1.5\nc: 1.2345675e+06\nd: 1e-07\ne: 1e+21\n"
        );
    }

    #[test]
    fn block_styles_and_indentless_sequences() {
        assert_eq!(
            rt("a:\n  b:\n  - x\n  - {}\n  - []\n"),
            "a:\n  b:\n  - x\n  - {}\n  - []\n"
        );
        assert_eq!(
            rt("a: \"x\\ny\"\nb: \"x\\n\"\nc: \"x\\n\\n\"\nd: \" x\\ny\"\n"),
            "a: |-\n  x\n  y\nb: |\n  x\nc: |+\n  x\n\nd: |2-\n   x\n  y\n"
        );
        assert_eq!(
            rt("- - a\n  - b\n- c: d\n  e: f\n"),
            "- - a\n  - b\n- c: d\n  e: f\n"
        );
        // Trailing space before a newline forbids the literal style.
        assert_eq!(rt("a: \"x \\ny\"\n"), "a: \"x \\ny\"\n");
    }

    #[test]
    fn folds_long_plain_scalars_past_column_80() {
        let long = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Maecenas suscipit ex non molestie varius.";
        let out = rt(&format!("spec:\n  value: {long}\n"));
        assert_eq!(
            out,
            "spec:\n  value: Lorem ipsum dolor sit amet, consectetur adipiscing elit. Maecenas suscipit\n    ex non molestie varius.\n"
        );
        assert_eq!(
            parse_one(&out)
                .unwrap()
                .get_path(&["spec", "value"])
                .unwrap()
                .as_str(),
            Some(long)
        );
    }

    #[test]
    fn escapes_unprintable_characters() {
        assert_eq!(
            rt("a: \"tab\\there\"\nb: \"\\U0001F600\"\n"),
            "a: \"tab\\there\"\nb: \"\\U0001F600\"\n"
        );
    }
}
