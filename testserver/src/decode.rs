//! What kube-apiserver's typed decoder refuses in a create or update body before anything
//! else looks at it: a 400 BadRequest `<Kind> in version "<v>" cannot be handled as a
//! <Kind>: <decode error>` (k8s.io/apiserver `pkg/endpoints/handlers/rest.go`
//! `transformDecodeError`).
//!
//! - `metav1.MicroTime` fields (Lease `acquireTime`/`renewTime`, Event `eventTime`,
//!   `series.lastObservedTime`) parse with `RFC3339Micro`, `2006-01-02T15:04:05.000000Z07:00`:
//!   exactly six fractional digits (k8s.io/apimachinery `pkg/apis/meta/v1/micro_time.go`
//!   `UnmarshalJSON`).
//! - `metav1.Time` fields parse with `RFC3339` (`time.go`), which also takes any fraction.
//! - A Secret's `data` values are `[]byte`, base64 in JSON: an invalid one is Go's
//!   `encoding/base64` `CorruptInputError` (`illegal base64 data at input byte N`).
//!
//! A patch's result is decoded the same way, and a failure is a 422 on `patch` instead
//! ([`check_patched`]); server-side apply bodies are not decoded here.
//!
//! The time errors are Go's `time.ParseError` texts (`parsing time "V" as "LAYOUT": cannot
//! parse "REST" as "ELEMENT"`).

use crate::resources::ApiResource;
use crate::schema;
use crate::store::ApiError;
use serde_json::Value as Json;

const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const RFC3339: &str = "2006-01-02T15:04:05Z07:00";
const RFC3339_MICRO: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Parses `v` as Go's `time.Parse(layout, v)` does for the two RFC 3339 layouts above
/// (`micro`: exactly six fractional digits; otherwise an optional fraction of any length).
///
/// # Errors
/// Go's `ParseError` text.
pub fn parse_time(v: &str, micro: bool) -> Result<(), String> {
    let layout = if micro { RFC3339_MICRO } else { RFC3339 };
    let fail = |rest: &str, elem: &str| {
        Err(format!(
            "parsing time {v:?} as {layout:?}: cannot parse {rest:?} as {elem:?}"
        ))
    };
    let range = |what: &str| Err(format!("parsing time {v:?}: {what} out of range"));
    // (element, digits, maximum) for the numbers, literals in between.
    let numbers: [(&str, usize, u32, &str); 6] = [
        ("2006", 4, 9999, ""),
        ("01", 2, 12, "month"),
        ("02", 2, 31, "day"),
        ("15", 2, 23, "hour"),
        ("04", 2, 59, "minute"),
        ("05", 2, 59, "second"),
    ];
    let separators = ["-", "-", "T", ":", ":", ""];
    let mut rest = v;
    for ((elem, digits, max, what), sep) in numbers.iter().zip(separators) {
        let head = rest
            .get(..*digits)
            .filter(|h| h.bytes().all(|b| b.is_ascii_digit()));
        let Some(head) = head else {
            return fail(rest, elem);
        };
        let n: u32 = head.parse().unwrap_or(0);
        if n > *max || (n == 0 && matches!(*elem, "01" | "02")) {
            return range(what);
        }
        rest = &rest[*digits..];
        if !sep.is_empty() {
            match rest.strip_prefix(sep) {
                Some(r) => rest = r,
                None => return fail(rest, sep),
            }
        }
    }
    if micro {
        let frac = rest
            .strip_prefix('.')
            .and_then(|r| r.get(..6))
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        if frac.is_none() {
            return fail(rest, ".000000");
        }
        rest = &rest[7..];
    } else if let Some(r) = rest.strip_prefix(['.', ',']) {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return fail(rest, "Z07:00");
        }
        rest = &r[n..];
    }
    if let Some(r) = rest.strip_prefix('Z') {
        rest = r;
    } else {
        let b = rest.as_bytes();
        let offset = b.len() >= 6
            && matches!(b[0], b'+' | b'-')
            && b[1..3].iter().all(u8::is_ascii_digit)
            && b[3] == b':'
            && b[4..6].iter().all(u8::is_ascii_digit);
        if !offset {
            return fail(rest, "Z07:00");
        }
        rest = &rest[6..];
    }
    if !rest.is_empty() {
        return Err(format!("parsing time {v:?}: extra text: {rest:?}"));
    }
    Ok(())
}

/// Go's standard base64 decoding (`base64.StdEncoding.DecodeString`): `\r` and `\n` are
/// skipped, padding is required.
///
/// # Errors
/// `illegal base64 data at input byte N`.
pub fn check_base64(v: &str) -> Result<(), String> {
    let err = |i: usize| Err(format!("illegal base64 data at input byte {i}"));
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    // Positions of the significant characters.
    let chars: Vec<(usize, u8)> = v
        .bytes()
        .enumerate()
        .filter(|(_, c)| *c != b'\r' && *c != b'\n')
        .collect();
    let quanta = chars.len().div_ceil(4);
    for (q, quantum) in chars.chunks(4).enumerate() {
        for (j, &(i, c)) in quantum.iter().enumerate() {
            if c == b'=' {
                // Padding: only as the 3rd/4th character of the last quantum.
                let pads = &quantum[j..];
                let last = q + 1 == quanta;
                if j < 2 || !last || quantum.len() != 4 || pads.iter().any(|(_, p)| *p != b'=') {
                    return err(i);
                }
                return Ok(());
            }
            if !alphabet(c) {
                return err(i);
            }
        }
        if quantum.len() < 4 {
            // Input ends inside a quantum: the error names where that quantum began.
            return err(quantum[0].0);
        }
    }
    Ok(())
}

/// What the typed decoder would fail on in `obj` (see the module docs): its error text.
fn decode_error(r: &ApiResource, obj: &Json) -> Option<String> {
    if r.schema.is_some() {
        return None;
    }
    let gv = r.group_version();
    for (ty, micro) in [(MICRO_TIME, true), (TIME, false)] {
        for (_, v) in schema::values_of_type(&gv, &r.kind, obj, ty) {
            if let Some(e) = v.as_str().and_then(|s| parse_time(s, micro).err()) {
                return Some(e);
            }
        }
    }
    if r.kind == "Secret" && r.group.is_empty() {
        for v in obj["data"].as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(e) = v.as_str().and_then(|s| check_base64(s).err()) {
                return Some(e);
            }
        }
    }
    None
}

/// Decodes a create/update body of `r` the way the typed decoder would, refusing bad times
/// and Secret data (see the module docs).
///
/// # Errors
/// The 400 [`ApiError`].
pub fn check(r: &ApiResource, body: &Json) -> Result<(), ApiError> {
    match decode_error(r, body) {
        None => Ok(()),
        Some(e) => Err(ApiError::bad_request(format!(
            "{kind} in version {:?} cannot be handled as a {kind}: {e}",
            r.version,
            kind = r.kind
        ))),
    }
}

/// The same for the object a merge, strategic merge or JSON patch produced: the patcher
/// reports the decode failure as a 422 on the field `patch` whose value is the patched
/// object (k8s.io/apiserver `pkg/endpoints/handlers/patch.go`, `applyPatchToCurrentObject`:
/// `errors.NewInvalid(schema.GroupKind{}, "", field.Invalid(field.NewPath("patch"), ...))`).
/// The value is printed as compact JSON with sorted keys, which is what Go prints for JSON
/// and merge patches up to key order (a strategic merge patch prints a Go map instead).
///
/// # Errors
/// The 422 [`ApiError`].
pub fn check_patched(r: &ApiResource, patched: &Json) -> Result<(), ApiError> {
    match decode_error(r, patched) {
        None => Ok(()),
        Some(e) => {
            let value = crate::validate::quoted(&crate::defaults::go_json(Some(patched)));
            let cause = crate::validate::invalid("patch", &value, &e);
            Err(crate::validate::invalid_error("", "", "", &[cause]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_wants_exactly_six_fractional_digits() {
        assert!(parse_time("2026-01-01T00:00:10.250000Z", true).is_ok());
        assert!(parse_time("2026-01-01T00:00:10.250000+02:00", true).is_ok());
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z", true).unwrap_err(),
            r#"parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000""#
        );
        assert!(parse_time("2026-01-01T00:00:00.250Z", true)
            .unwrap_err()
            .ends_with(r#"cannot parse ".250Z" as ".000000""#));
        assert!(parse_time("2026-01-01T00:00:00.123456789Z", true)
            .unwrap_err()
            .ends_with(r#"cannot parse "789Z" as "Z07:00""#));
        assert!(parse_time("yesterday", true)
            .unwrap_err()
            .ends_with(r#"cannot parse "yesterday" as "2006""#));
    }

    #[test]
    fn time_takes_any_fraction_but_checks_ranges() {
        assert!(parse_time("2026-01-01T00:00:00Z", false).is_ok());
        assert!(parse_time("2026-01-01T00:00:00.5Z", false).is_ok());
        assert_eq!(
            parse_time("2026-13-01T00:00:00Z", false).unwrap_err(),
            r#"parsing time "2026-13-01T00:00:00Z": month out of range"#
        );
        assert!(parse_time("2026-01-01 00:00:00Z", false)
            .unwrap_err()
            .ends_with(r#"cannot parse " 00:00:00Z" as "T""#));
        assert!(parse_time("2026-01-01T00:00:00Zjunk", false)
            .unwrap_err()
            .ends_with(r#"extra text: "junk""#));
    }

    #[test]
    fn base64_errors_name_the_byte_go_names() {
        assert!(check_base64("aGVsbG8=").is_ok());
        assert!(check_base64("aGVs\nbG8=").is_ok());
        assert!(check_base64("").is_ok());
        assert_eq!(
            check_base64("aGV*bG8=").unwrap_err(),
            "illegal base64 data at input byte 3"
        );
        // Unpadded: the incomplete quantum's first byte.
        assert_eq!(
            check_base64("aGVsbG8").unwrap_err(),
            "illegal base64 data at input byte 4"
        );
        assert_eq!(
            check_base64("a=bc").unwrap_err(),
            "illegal base64 data at input byte 1"
        );
    }

    #[test]
    fn patches_producing_bad_times_are_422s_on_the_patch() {
        let events = crate::resources::builtin()
            .into_iter()
            .find(|r| r.group == "events.k8s.io")
            .expect("events");
        let patched = serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:00Z"}});
        let e = check_patched(&events, &patched).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .starts_with(" \"\" is invalid: patch: Invalid value: \"{"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with(r#"cannot parse "Z" as ".000000""#),
            "{}",
            e.message
        );
        assert_eq!(e.details["causes"][0]["field"], "patch");
        assert!(e.details.get("kind").is_none());
    }

    #[test]
    fn bodies_with_bad_times_or_secret_data_are_400s() {
        let res = |g: &str, p: &str| {
            crate::resources::builtin()
                .into_iter()
                .find(|r| r.group == g && r.plural == p)
                .expect("builtin")
        };
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "spec": {"renewTime": "2026-01-01T00:00:00Z"}});
        let e = check(&res("coordination.k8s.io", "leases"), &lease).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e
            .message
            .starts_with("Lease in version \"v1\" cannot be handled as a Lease: parsing time"));
        let secret =
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}});
        let e = check(&res("", "secrets"), &secret).unwrap_err();
        assert_eq!(
            e.message,
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
        );
        let ok =
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "dmFsdWU="}});
        assert!(check(&res("", "secrets"), &ok).is_ok());
    }
}
