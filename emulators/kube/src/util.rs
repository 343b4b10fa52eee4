//! Small helpers that reproduce Go/Kubernetes formatting rules: RFC 3339 timestamps,
//! `duration.HumanDuration`, `strconv.Quote`, `%v` of numbers, query strings and name syntax.
//! They exist so that messages and cells come out byte-for-byte like the real API server's,
//! which is what kubectl prints and what tests compare.

use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Current wall-clock time as (unix seconds, nanoseconds).
pub fn now() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// `metav1.Time` serialisation: seconds precision, UTC, `Z`.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

pub fn now_rfc3339() -> String {
    rfc3339(now().0)
}

fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2026-11-23T20:00:00Z`, fractional seconds and numeric offsets allowed)
/// into (unix seconds, nanoseconds). `None` when the text is not a valid timestamp.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let y = num(0..4)?;
    let mo = num(5..7)?;
    let d = num(8..10)?;
    let h = num(11..13)?;
    let mi = num(14..16)?;
    let sec = num(17..19)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let month_days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 9)];
        let mut n: u32 = frac.parse().ok()?;
        for _ in frac.len()..9 {
            n *= 10;
        }
        nanos = n;
    }
    let offset = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(b'+') | Some(b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if b[i] == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some((secs, nanos))
}

/// The two layouts `metav1.Time` and `metav1.MicroTime` decode with.
pub const RFC3339_LAYOUT: &str = "2006-01-02T15:04:05Z07:00";
pub const RFC3339_MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `time.Parse` for the two Kubernetes layouts, with its error texts: `micro` selects
/// `RFC3339Micro` (`metav1.MicroTime`: exactly six fractional digits), otherwise `RFC3339`
/// (`metav1.Time`: any fraction is accepted and dropped on output). Returns (unix seconds, ns).
pub fn parse_go_time(value: &str, micro: bool) -> Result<(i64, u32), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Std {
        Year,
        Month,
        Day,
        Hour,
        Minute,
        Second,
        Frac6,
        Zone,
    }
    let layout = if micro {
        RFC3339_MICRO_LAYOUT
    } else {
        RFC3339_LAYOUT
    };
    let mut chunks: Vec<(&str, Std, &str)> = vec![
        ("", Std::Year, "2006"),
        ("-", Std::Month, "01"),
        ("-", Std::Day, "02"),
        ("T", Std::Hour, "15"),
        (":", Std::Minute, "04"),
        (":", Std::Second, "05"),
    ];
    if micro {
        chunks.push(("", Std::Frac6, ".000000"));
    }
    chunks.push(("", Std::Zone, "Z07:00"));
    let cannot = |elem: &str, layout_elem: &str| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            go_quote(value),
            go_quote(layout),
            go_quote(elem),
            go_quote(layout_elem)
        )
    };
    let out_of_range =
        |what: &str| format!("parsing time {}: {what} out of range", go_quote(value));
    let digit = |s: &str, i: usize| s.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
    // `getnum`: one or two digits (exactly two when `fixed`).
    let getnum = |s: &str, fixed: bool| -> Option<(i64, usize)> {
        if !digit(s, 0) {
            return None;
        }
        if !digit(s, 1) {
            return (!fixed).then(|| (i64::from(s.as_bytes()[0] - b'0'), 1));
        }
        Some((s[..2].parse().ok()?, 2))
    };
    let (mut year, mut month, mut day, mut hour, mut min, mut sec) = (0i64, 0, 0, 0, 0, 0);
    let mut nanos: u32 = 0;
    let mut offset: i64 = 0;
    let mut rest = value;
    for (prefix, std, std_str) in chunks {
        match rest.strip_prefix(prefix) {
            Some(r) => rest = r,
            None => {
                // `skip` fails at the first differing byte.
                let common = rest
                    .bytes()
                    .zip(prefix.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                return Err(cannot(&rest[common..], prefix));
            }
        }
        let hold = rest;
        let bad = || cannot(hold, std_str);
        match std {
            Std::Year => {
                let p = rest.get(..4).ok_or_else(bad)?;
                if !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                year = p.parse().map_err(|_| bad())?;
                rest = &rest[4..];
            }
            Std::Month | Std::Day | Std::Hour | Std::Minute | Std::Second => {
                let (n, used) = getnum(rest, std != Std::Hour).ok_or_else(bad)?;
                rest = &rest[used..];
                match std {
                    Std::Month if !(1..=12).contains(&n) => return Err(out_of_range("month")),
                    Std::Month => month = n,
                    Std::Day => day = n,
                    Std::Hour if n >= 24 => return Err(out_of_range("hour")),
                    Std::Hour => hour = n,
                    Std::Minute if n >= 60 => return Err(out_of_range("minute")),
                    Std::Minute => min = n,
                    _ if n >= 60 => return Err(out_of_range("second")),
                    _ => {
                        sec = n;
                        // A fraction the layout does not mention is accepted (any length).
                        let b = rest.as_bytes();
                        if !micro
                            && b.len() >= 2
                            && (b[0] == b'.' || b[0] == b',')
                            && digit(rest, 1)
                        {
                            let mut n = 2;
                            while digit(rest, n) {
                                n += 1;
                            }
                            let frac = &rest[1..n.min(10)];
                            let mut v: u32 = frac.parse().map_err(|_| bad())?;
                            for _ in frac.len()..9 {
                                v *= 10;
                            }
                            nanos = v;
                            rest = &rest[n..];
                        }
                    }
                }
            }
            Std::Frac6 => {
                let b = rest.as_bytes();
                if b.len() < 7 || !(b[0] == b'.' || b[0] == b',') {
                    return Err(bad());
                }
                let digits = rest.get(1..7).ok_or_else(bad)?;
                if !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                nanos = digits.parse::<u32>().map_err(|_| bad())? * 1000;
                rest = &rest[7..];
            }
            Std::Zone => {
                if let Some(r) = rest.strip_prefix('Z') {
                    rest = r;
                } else {
                    let b = rest.as_bytes();
                    if b.len() < 6 || b[3] != b':' {
                        return Err(bad());
                    }
                    let (oh, _) = getnum(rest.get(1..3).ok_or_else(bad)?, true).ok_or_else(bad)?;
                    let (om, _) = getnum(rest.get(4..6).ok_or_else(bad)?, true).ok_or_else(bad)?;
                    if oh > 24 {
                        return Err(out_of_range("time zone offset hour"));
                    }
                    if om > 60 {
                        return Err(out_of_range("time zone offset minute"));
                    }
                    offset = match b[0] {
                        b'+' => oh * 3600 + om * 60,
                        b'-' => -(oh * 3600 + om * 60),
                        _ => return Err(bad()),
                    };
                    rest = &rest[6..];
                }
            }
        }
    }
    if !rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            go_quote(value),
            go_quote(rest)
        ));
    }
    if day < 1 || day > days_in(month, year) {
        return Err(out_of_range("day"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Ok((secs, nanos))
}

/// `metav1.MicroTime` serialisation: UTC, six fractional digits, `Z`.
pub fn rfc3339_micro(secs: i64, nanos: u32) -> String {
    let base = rfc3339(secs);
    format!("{}.{:06}Z", &base[..base.len() - 1], nanos / 1000)
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, fed with milliseconds.
pub fn human_duration(millis: i64) -> String {
    let seconds = millis / 1000;
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// Go's `strconv.Quote` (what `%q` prints), which the API server uses inside messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (shortest representation, exponent form only for huge/tiny values).
pub fn go_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{}", f as i128);
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust prints `1e-5`, Go `1e-05`.
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{f}")
}

/// Go's `%v` of a JSON number as decoded by apimachinery (int64 or float64).
pub fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// How `field.Error` renders a bad value: strings quoted, numbers/bools bare, nil as `"null"`,
/// maps and slices in Go's `%#v` shape.
pub fn go_bad_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(_) | Value::Object(_) => go_sharp_v(v),
    }
}

fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_sharp_v).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_sharp_v(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// JSON type name as the OpenAPI validator reports it.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding of one query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a path segment (no `+` handling: only query strings use it).
pub fn path_decode(s: &str) -> String {
    percent_decode(&s.replace('+', "%2B"))
}

/// Query pairs in order. kube-rs emits `?&limit=500` and bare `?`: empty pairs are ignored.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

pub const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Errors of `validation.IsDNS1123Subdomain` (messages without the field prefix).
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_dns1123_label) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    if b.is_empty()
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        || b[0] == b'-'
        || b[b.len() - 1] == b'-'
    {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` without a length limit.
fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_REGEX_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Errors of `validation.IsQualifiedName` (label keys, annotation keys).
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".to_string());
            } else {
                for e in dns1123_subdomain_errors(prefix) {
                    out.push(format!("prefix part {e}"));
                }
            }
            *name
        }
        _ => {
            out.push(format!("a qualified name {QUALIFIED_NAME_REGEX_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".into());
    }
    if !matches_qualified_part(name) {
        out.push(format!("name part {QUALIFIED_NAME_REGEX_MSG}"));
    }
    out
}

/// Errors of `validation.IsValidLabelValue`.
pub fn label_value_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() && !matches_qualified_part(s) {
        out.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    }
    out
}

/// Stable, cheap content hash (FNV-1a 64) used for openapi `hash=` query values.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Value at a dotted path of object keys.
pub fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(*p)?;
    }
    Some(cur)
}

pub fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_path(v, path).and_then(Value::as_str)
}

/// Mutable object at `metadata`, created if absent or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Default::default());
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !m.is_object() {
        *m = Value::Object(Default::default());
    }
    m.as_object_mut().expect("object ensured above")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_parsing() {
        assert_eq!(
            parse_go_time("2026-11-23T23:40:00.123456+01:00", true)
                .map(|(s, n)| rfc3339_micro(s, n)),
            Ok("2026-11-23T22:40:00.123456Z".to_string())
        );
        assert_eq!(
            parse_go_time("2026-11-23T23:40:00Z", true).unwrap_err(),
            "parsing time \"2026-11-23T23:40:00Z\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\""
        );
        assert_eq!(
            parse_go_time("2026-11-23T23:40:00.123456789Z", true).unwrap_err(),
            "parsing time \"2026-11-23T23:40:00.123456789Z\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"789Z\" as \"Z07:00\""
        );
        assert_eq!(
            parse_go_time("yesterday", false).unwrap_err(),
            "parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\""
        );
        assert_eq!(
            parse_go_time("2026-02-30T00:00:00Z", false).unwrap_err(),
            "parsing time \"2026-02-30T00:00:00Z\": day out of range"
        );
        assert_eq!(
            parse_go_time("2026-11-23T23:40:00.5Z", false).map(|(s, _)| rfc3339(s)),
            Ok("2026-11-23T23:40:00Z".to_string())
        );
    }

    #[test]
    fn time_round_trip() {
        let (s, n) = parse_rfc3339("2026-11-23T20:00:00Z").unwrap();
        assert_eq!(rfc3339(s), "2026-11-23T20:00:00Z");
        assert_eq!(n, 0);
        let (s2, n2) = parse_rfc3339("2026-11-23T21:00:00.5+01:00").unwrap();
        assert_eq!(s2, s);
        assert_eq!(n2, 500_000_000);
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(45_000), "45s");
        assert_eq!(human_duration(312_000), "5m12s");
        assert_eq!(human_duration(300_000), "5m");
        assert_eq!(human_duration(95 * 60_000), "95m");
        assert_eq!(human_duration((3 * 60 + 35) * 60_000), "3h35m");
        assert_eq!(human_duration(20 * 3_600_000), "20h");
        assert_eq!(human_duration((3 * 24 + 4) * 3_600_000), "3d4h");
        assert_eq!(human_duration(120 * 86_400_000), "120d");
        assert_eq!(human_duration((2 * 365 + 30) * 86_400_000), "2y30d");
        assert_eq!(human_duration(9 * 365 * 86_400_000), "9y");
        assert_eq!(human_duration(-5_000), "<invalid>");
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e-5), "1e-05");
        assert_eq!(go_bad_value(&serde_json::json!("x")), "\"x\"");
        assert_eq!(go_bad_value(&Value::Null), "\"null\"");
    }

    #[test]
    fn names() {
        assert!(dns1123_subdomain_errors("a.b-c").is_empty());
        assert!(!dns1123_subdomain_errors("Bad_Name").is_empty());
        assert!(is_dns1123_label("kube-system"));
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name_errors("bad key!").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("bad value!").is_empty());
        assert_eq!(
            parse_query("&limit=500&&fieldSelector=metadata.name%3Dx"),
            vec![
                ("limit".to_string(), "500".to_string()),
                ("fieldSelector".to_string(), "metadata.name=x".to_string())
            ]
        );
    }
}
