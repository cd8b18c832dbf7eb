//! Splits one line of line protocol into its parts, applying InfluxDB's escaping rules:
//!
//! | element | escaped with `\` |
//! |---|---|
//! | measurement | `,` and space |
//! | tag key, tag value, field key | `,`, `=` and space |
//! | string field value (inside `"…"`) | `"` and `\` |
//!
//! As in InfluxDB, a backslash before any other character is kept literally, and an escaped
//! character never ends an element. Names are returned unescaped and not yet sanitised; the
//! mapping to series happens in the parent module.

/// Characters a backslash escapes in a measurement.
const MEASUREMENT_ESCAPES: &[u8] = b", ";
/// Characters a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= ";
/// Longest piece of input quoted back in an error message.
const SNIPPET_CHARS: usize = 64;

/// A field value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    /// `123i`
    Integer(i64),
    /// `123u`
    Unsigned(u64),
    /// `t`, `true`, `f`, `false` in any of InfluxDB's spellings.
    Boolean(bool),
    /// `"…"`, unescaped.
    String(String),
}

/// What follows the measurement and tags.
#[derive(Clone, Debug, PartialEq)]
pub enum Fields {
    /// Seed 003's form: a bare value, stored under the measurement name.
    Bare(f64),
    /// InfluxDB's form: `key=value` pairs, in input order.
    Named(Vec<(String, FieldValue)>),
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct RawLine {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Fields,
    /// In the body's precision; `None` when the line has none.
    pub timestamp: Option<i64>,
}

/// Parses one line. `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<RawLine>, String> {
    let Some(line) = content(line) else {
        return Ok(None);
    };
    let key = parse_key(line)?;
    let (fields, timestamp) = parse_tail(line, key.end)?;
    Ok(Some(RawLine {
        measurement: key.measurement,
        tags: key.tags,
        fields,
        timestamp,
    }))
}

/// The measurement and tags of a line, and where they end.
#[derive(Clone, Debug, PartialEq)]
pub struct RawKey {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    /// Byte offset just past the last tag (or the measurement): the blank before the fields.
    pub end: usize,
}

/// A line without its line ending and leading blanks; `None` for a blank line or a comment.
pub fn content(line: &str) -> Option<&str> {
    let line = line.trim_end_matches('\r').trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line)
}

/// Parses the measurement and tags at the start of `line` (as [`content`] returns it). The
/// key is `line[..end]`: another line starting with the same bytes followed by a space has the
/// same key, which is how a body's repeated series are recognised without parsing them again.
pub fn parse_key(line: &str) -> Result<RawKey, String> {
    let bytes = line.as_bytes();

    let m_end = scan_until(bytes, 0, MEASUREMENT_ESCAPES);
    let measurement = unescape(slice(line, 0, m_end), MEASUREMENT_ESCAPES);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }

    let mut pos = m_end;
    let mut tags = Vec::new();
    while bytes.get(pos) == Some(&b',') {
        let k_start = pos + 1;
        let k_end = scan_until(bytes, k_start, KEY_ESCAPES);
        let key = unescape(slice(line, k_start, k_end), KEY_ESCAPES);
        if bytes.get(k_end) != Some(&b'=') {
            return Err(format!("tag {} has no '='", snippet(&key)));
        }
        if key.is_empty() {
            return Err("empty tag key".into());
        }
        let v_start = k_end + 1;
        let v_end = scan_until(bytes, v_start, KEY_ESCAPES);
        if bytes.get(v_end) == Some(&b'=') {
            return Err(format!(
                "unescaped '=' in the value of tag {}",
                snippet(&key)
            ));
        }
        let value = unescape(slice(line, v_start, v_end), KEY_ESCAPES);
        if value.is_empty() {
            return Err(format!("tag {} has an empty value", snippet(&key)));
        }
        tags.push((key, value));
        pos = v_end;
    }
    Ok(RawKey {
        measurement,
        tags,
        end: pos,
    })
}

/// Where [`parse_key`] ends `line`'s key, found by the same scan without building any
/// string; `None` exactly when [`parse_key`] refuses the key. An element is empty after
/// unescaping only when it is empty as written (unescaping drops a backslash, never the
/// character after it).
pub fn key_end(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut pos = scan_until(bytes, 0, MEASUREMENT_ESCAPES);
    if pos == 0 {
        return None;
    }
    while bytes.get(pos) == Some(&b',') {
        let k_start = pos + 1;
        let k_end = scan_until(bytes, k_start, KEY_ESCAPES);
        if bytes.get(k_end) != Some(&b'=') || k_end == k_start {
            return None;
        }
        let v_start = k_end + 1;
        let v_end = scan_until(bytes, v_start, KEY_ESCAPES);
        if bytes.get(v_end) == Some(&b'=') || v_end <= v_start {
            return None;
        }
        pos = v_end;
    }
    Some(pos)
}

/// Parses the fields and timestamp that follow the key ending at `pos`.
pub fn parse_tail(line: &str, pos: usize) -> Result<(Fields, Option<i64>), String> {
    let bytes = line.as_bytes();
    let f_start = skip_blanks(bytes, pos);
    if f_start == pos || f_start >= bytes.len() {
        return Err("missing field set".into());
    }
    let f_end = scan_fields(bytes, f_start)?;
    let fields = parse_fields(slice(line, f_start, f_end))?;

    let rest = slice(line, f_end, bytes.len()).trim_matches([' ', '\t']);
    let timestamp = if rest.is_empty() {
        None
    } else {
        Some(parse_timestamp(rest)?)
    };
    Ok((fields, timestamp))
}

/// `line[from..to]`, or "" if the range is not valid (it always is: every bound used is the
/// position of an ASCII byte or the end, so it falls on a character boundary).
fn slice(line: &str, from: usize, to: usize) -> &str {
    line.get(from..to).unwrap_or("")
}

/// Index of the first byte from `start` that is one of `stops` and not escaped, or the end.
fn scan_until(bytes: &[u8], start: usize, stops: &[u8]) -> usize {
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            i += 2;
            continue;
        }
        if stops.contains(&b) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// End of the field set: the first unescaped blank outside a quoted string.
fn scan_fields(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start;
    let mut quoted = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err("unterminated string field value".into());
    }
    Ok(bytes.len())
}

/// Splits a field set on unescaped commas outside quotes and parses each field.
fn parse_fields(set: &str) -> Result<Fields, String> {
    let bytes = set.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut i, mut quoted) = (0, 0, false);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                pieces.push(slice(set, start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    pieces.push(slice(set, start, bytes.len()));

    let mut fields = Vec::with_capacity(pieces.len());
    for piece in &pieces {
        let eq = scan_until(piece.as_bytes(), 0, b"=");
        if eq >= piece.len() {
            // Seed 003's `name,tag=v 45.2`: a single value with no key.
            if pieces.len() == 1 {
                return parse_float(piece).map(Fields::Bare);
            }
            return Err(format!("field {} has no '='", snippet(piece)));
        }
        let key = unescape(slice(piece, 0, eq), KEY_ESCAPES);
        if key.is_empty() {
            return Err("empty field key".into());
        }
        let value = parse_field_value(slice(piece, eq + 1, piece.len()))
            .map_err(|e| format!("field {}: {e}", snippet(&key)))?;
        fields.push((key, value));
    }
    Ok(Fields::Named(fields))
}

fn parse_field_value(raw: &str) -> Result<FieldValue, String> {
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("malformed string value {}", snippet(raw)))?;
        return Ok(FieldValue::String(unescape(inner, b"\"\\")));
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        "" => return Err("missing value".into()),
        _ => {}
    }
    if let Some(digits) = raw.strip_suffix('i') {
        return digits
            .parse::<i64>()
            .map(FieldValue::Integer)
            .map_err(|_| format!("invalid integer {}", snippet(raw)));
    }
    if let Some(digits) = raw.strip_suffix('u') {
        return digits
            .parse::<u64>()
            .map(FieldValue::Unsigned)
            .map_err(|_| format!("invalid unsigned integer {}", snippet(raw)));
    }
    parse_float(raw).map(FieldValue::Float)
}

/// A decimal float. Rust's parser also takes `inf`, `NaN` and `infinity`; InfluxDB does not,
/// so only digits, sign, point and exponent are let through.
fn parse_float(raw: &str) -> Result<f64, String> {
    let plausible = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match raw.parse::<f64>() {
        Ok(v) if plausible && v.is_finite() => Ok(v),
        _ => Err(format!("invalid number {}", snippet(raw))),
    }
}

fn parse_timestamp(raw: &str) -> Result<i64, String> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid timestamp {}", snippet(raw)));
    }
    raw.parse::<i64>()
        .map_err(|_| format!("timestamp {} is out of range", snippet(raw)))
}

/// Removes the backslash before any of `escapable`; other backslashes stay.
fn unescape(s: &str, escapable: &[u8]) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if next.is_ascii() && escapable.contains(&(next as u8)) {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// A quoted, truncated piece of input for error messages.
fn snippet(s: &str) -> String {
    if s.chars().count() <= SNIPPET_CHARS {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(SNIPPET_CHARS).collect();
        format!("{cut:?}…")
    }
}
