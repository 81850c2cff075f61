//! The canonical text of JSON, written straight from the JSON text a store holds: no tree of
//! values is built, keys and strings are borrowed from the text, and only what differs from its
//! canonical form is decoded (an escaped string, a number not spelled as a plain integer).
//!
//! The canonical form: no whitespace, object keys sorted by their UTF-8 bytes (a key repeated
//! in one object counts once, with its last value, as a parser keeps it), strings escaped as
//! `serde_json` escapes them, integers in decimal with every digit (past 64 bits too) and other
//! numbers in the shortest form that reads back as the same `f64` (`1.50`, `1.5` and `15e-1`
//! are one number). The same form as
//! the policy SDK's `json::canonical`; the digests of existing ledgers rest on it.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Number;

/// Appends the canonical text of `text`, which must be valid JSON (checked beforehand: this
/// reads it without checking it again). Returns whether an object of it repeats a key.
pub(crate) fn canonical_text(text: &str, out: &mut String) -> bool {
    let mut scanner = Scanner::new(text);
    scanner.value(out);
    scanner.repeated_key
}

/// Appends a string as a JSON string literal, escaped exactly as `serde_json` escapes it (the
/// digests of existing ledgers depend on it): `"`, `\\` and the control characters, the common
/// ones by their short escapes and the others as `\u00xx`.
pub(crate) fn escaped(text: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (at, c) in text.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        if short.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(short);
        }
        start = at + c.len_utf8();
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Appends the canonical spelling of a JSON number.
pub(crate) fn canonical_number(spelled: &str, out: &mut String) {
    // An integer as JSON spells it (no leading zero, no `-0`) and short enough for an i64 is
    // its own canonical form: no parse, no format.
    if is_plain_integer(spelled) || is_plain_decimal(spelled) {
        out.push_str(spelled);
        return;
    }
    let Ok(n) = serde_json::from_str::<Number>(spelled) else {
        out.push_str(spelled);
        return;
    };
    // Writing to a String cannot fail.
    let _ = if let Some(i) = n.as_i64() {
        write!(out, "{i}")
    } else if let Some(u) = n.as_u64() {
        write!(out, "{u}")
    } else if !spelled.contains(['.', 'e', 'E']) {
        // An integer past 64 bits keeps every digit (JSON spells an integer one way): a change
        // to its last digits is a change.
        out.push_str(spelled);
        Ok(())
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() => write!(out, "{f}"),
            _ => write!(out, "{n}"),
        }
    };
}

/// Whether `text` is a JSON integer that reads back as itself: digits after an optional `-`,
/// at most 18 of them (within an i64), and not a negative zero.
fn is_plain_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.starts_with('0') && (digits.len() > 1 || text.starts_with('-')))
}

/// Whether `text` is a decimal that reads back as itself: `-?(0|[1-9][0-9]*)\.[0-9]*[1-9]`,
/// no exponent, at most 15 significant digits. Any decimal of 15 significant digits or fewer
/// is the shortest spelling of the `f64` nearest to it (two such decimals never share an `f64`),
/// and its trailing digit is not a zero: the shortest form that reads back as the same `f64`
/// is the text itself, with no parse and no format.
fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let Some((whole, fraction)) = unsigned.split_once('.') else {
        return false;
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || fraction.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (whole.len() > 1 && whole.starts_with('0'))
        || fraction.ends_with('0')
    {
        return false;
    }
    let significant = if whole == "0" {
        fraction.trim_start_matches('0').len()
    } else {
        whole.len() + fraction.len()
    };
    significant <= 15
}

/// The JSON string a literal (quotes included) spells: borrowed when it has no escape.
pub(crate) fn unquoted(literal: &str) -> Cow<'_, str> {
    let inner = &literal[1..literal.len().saturating_sub(1).max(1)];
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    Cow::Owned(serde_json::from_str::<String>(literal).unwrap_or_default())
}

/// An object's text without its member `key` (the first one, with the comma that set it apart),
/// and that member's value, when the object has it; the text as it is otherwise. `text` must
/// be valid JSON.
pub(crate) fn without_member<'a>(text: &'a str, key: &str) -> (Cow<'a, str>, Option<&'a str>) {
    let mut scanner = Scanner::new(text);
    scanner.skip_whitespace();
    if scanner.peek() != b'{' || scanner.at >= text.len() {
        return (Cow::Borrowed(text), None);
    }
    scanner.at += 1;
    // Where the member before ends (its value's last byte), if there is one.
    let mut previous_end = None;
    loop {
        scanner.skip_whitespace();
        match scanner.peek() {
            b',' => scanner.at += 1,
            b'"' => {
                let member_start = scanner.at;
                let literal = scanner.string();
                scanner.skip_whitespace();
                scanner.at += 1; // ':'
                scanner.skip_whitespace();
                let value_start = scanner.at;
                scanner.skip_value();
                let value_end = scanner.at;
                if unquoted(literal) != key {
                    previous_end = Some(value_end);
                    continue;
                }
                let (cut_from, cut_to) = match previous_end {
                    // `, "key": value` goes.
                    Some(end) => (end, value_end),
                    // `"key": value ,` goes.
                    None => {
                        scanner.skip_whitespace();
                        if scanner.peek() == b',' && scanner.at < text.len() {
                            scanner.at += 1;
                            scanner.skip_whitespace();
                        }
                        (member_start, scanner.at.max(value_end))
                    }
                };
                let mut rest = String::with_capacity(text.len() - (cut_to - cut_from));
                rest.push_str(&text[..cut_from]);
                rest.push_str(&text[cut_to..]);
                return (Cow::Owned(rest), Some(&text[value_start..value_end]));
            }
            _ => return (Cow::Borrowed(text), None),
        }
    }
}

/// One pass over valid JSON text.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
    repeated_key: bool,
    /// Member lists and value buffers, reused by the objects of the text: an object takes one
    /// of each while it is read and gives them back once written.
    member_lists: Vec<Vec<Member<'a>>>,
    value_buffers: Vec<String>,
}

/// An object's member while it is read: its key (unescaped), the key as spelled, and where its
/// value's canonical text is in the output.
type Member<'a> = (Cow<'a, str>, &'a str, usize, usize);

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            at: 0,
            repeated_key: false,
            member_lists: Vec::new(),
            value_buffers: Vec::new(),
        }
    }

    fn peek(&self) -> u8 {
        self.text.as_bytes().get(self.at).copied().unwrap_or(b'}')
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\r' | b'\t') {
            self.at += 1;
        }
    }

    fn value(&mut self, out: &mut String) {
        self.skip_whitespace();
        match self.peek() {
            b'{' => self.object(out),
            b'[' => self.array(out),
            b'"' => {
                let literal = self.string();
                if literal.contains('\\') {
                    escaped(&unquoted(literal), out);
                } else {
                    out.push_str(literal);
                }
            }
            b't' | b'f' | b'n' => {
                let word = self.word(|b| b.is_ascii_alphabetic());
                out.push_str(word);
            }
            _ => {
                let number =
                    self.word(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
                canonical_number(number, out);
            }
        }
    }

    /// The run of bytes from here that match `part` (at least one, so a scan always moves).
    fn word(&mut self, part: impl Fn(u8) -> bool) -> &'a str {
        let start = self.at;
        self.at += 1;
        while self.at < self.text.len() && part(self.text.as_bytes()[self.at]) {
            self.at += 1;
        }
        self.text.get(start..self.at).unwrap_or_default()
    }

    /// Moves past the value that starts here.
    fn skip_value(&mut self) {
        match self.peek() {
            b'"' => {
                self.string();
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.at < self.text.len() {
                    match self.text.as_bytes()[self.at] {
                        b'"' => {
                            self.string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                self.word(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'));
            }
        }
    }

    /// The string literal that starts here, quotes included.
    fn string(&mut self) -> &'a str {
        let bytes = self.text.as_bytes();
        let start = self.at;
        self.at += 1;
        while let Some(found) = bytes
            .get(self.at..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            self.at += found;
            if bytes[self.at] == b'"' {
                self.at += 1;
                break;
            }
            self.at += 2;
        }
        self.at = self.at.min(bytes.len());
        self.text.get(start..self.at).unwrap_or("\"\"")
    }

    fn array(&mut self, out: &mut String) {
        self.at += 1;
        out.push('[');
        let mut first = true;
        loop {
            self.skip_whitespace();
            match self.peek() {
                b']' => {
                    self.at += 1;
                    break;
                }
                b',' => self.at += 1,
                _ if self.at >= self.text.len() => break,
                _ => {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    self.value(out);
                }
            }
        }
        out.push(']');
    }

    /// An object: its members' values are written after `out`'s end as they come, then put in
    /// key order behind `{`.
    fn object(&mut self, out: &mut String) {
        self.at += 1;
        let start = out.len();
        let mut members = self.member_lists.pop().unwrap_or_default();
        loop {
            self.skip_whitespace();
            match self.peek() {
                b'}' => {
                    self.at += 1;
                    break;
                }
                b',' => self.at += 1,
                b'"' => {
                    let literal = self.string();
                    self.skip_whitespace();
                    self.at += 1; // ':'
                    let value_start = out.len();
                    self.value(out);
                    members.push((unquoted(literal), literal, value_start, out.len()));
                }
                _ => break,
            }
        }
        // A stable sort keeps a repeated key's values in the text's order: the last one counts.
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut values = self.value_buffers.pop().unwrap_or_default();
        values.clear();
        values.push_str(&out[start..]);
        out.truncate(start);
        out.reserve(values.len() + members.len() * 8 + 2);
        out.push('{');
        let mut written = 0;
        for (i, (key, literal, from, to)) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|next| next.0 == *key) {
                self.repeated_key = true;
                continue;
            }
            if written > 0 {
                out.push(',');
            }
            written += 1;
            if literal.contains('\\') {
                escaped(key, out);
            } else {
                out.push_str(literal);
            }
            out.push(':');
            out.push_str(&values[from - start..to - start]);
        }
        out.push('}');
        members.clear();
        self.member_lists.push(members);
        self.value_buffers.push(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The canonical form as the policy SDK writes it, from a parsed value (the form the
    /// host's first digests were taken of): the text scanner must match it byte for byte, since
    /// existing ledgers hold digests of it and policies compare contents by it.
    fn reference(text: &str) -> String {
        essync_policy::json::canonical(text).into_owned()
    }

    fn both(text: &str) -> (String, String, bool) {
        serde_json::from_str::<Value>(text).expect(text);
        let mut scanned = String::new();
        let repeats = canonical_text(text, &mut scanned);
        (reference(text), scanned, repeats)
    }

    #[test]
    fn the_text_scanner_matches_the_canonical_form_of_the_parsed_value() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#" { "b" : [ 1.50 , { "y" : 1 , "x" : "é" } ] , "a" : null } "#,
            r#"{"a":null,"b":[1.5,{"x":"\u00e9","y":1.0}]}"#,
            r#"{"k\u0041y":"v\"q\\w\n\t\u0001","kAz":1,"":0}"#,
            r#"{"n":[0,-0,7,-7,1e3,1E3,-0.0,1.0,2.5e-3,123456789012345678,1234567890123456789]}"#,
            r#"{"big":18446744073709551616,"bigger":123456789012345678901234567890}"#,
            r#"{"f":0.1,"g":100.0,"h":1e300,"i":-1.7976931348623157e308,"j":5e-324}"#,
            r#"{"t":true,"f":false,"z":null,"s":"\ud834\udd1e \u2028 \/"}"#,
            r#"{"deep":{"c":{"b":{"a":[[],[{}],{"z":1,"a":2}]}}}}"#,
            "{\"ws\":\r\n\t[ 1 ,\n2 ]\n}",
            r#""just a string""#,
            r#"42"#,
        ] {
            let (expected, scanned, repeats) = both(text);
            assert_eq!(scanned, expected, "{text}");
            assert!(!repeats, "{text}");
        }
    }

    #[test]
    fn plain_decimals_are_their_own_canonical_form() {
        let slow = |text: &str| {
            let n: Number = serde_json::from_str(text).expect(text);
            n.as_f64().expect(text).to_string()
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let r = next();
            let whole = match r % 4 {
                0 => 0,
                1 => (r >> 8) % 1000,
                2 => (r >> 8) % 10_000_000,
                _ => (r >> 8) % 100_000_000_000_000,
            }
            .to_string();
            let places = (next() % 16) as usize;
            let fraction = format!("{:016}", next() % 10_000_000_000_000_000);
            let sign = if r & 1 << 7 == 0 { "" } else { "-" };
            let text = format!("{sign}{whole}.{}", &fraction[..places.max(1)]);
            if is_plain_decimal(&text) {
                checked += 1;
                assert_eq!(slow(&text), text);
            }
        }
        assert!(checked > 50_000, "{checked}");
        for text in [
            "1.0",
            "1.50",
            "0.0",
            "-0.0",
            "1.",
            ".5",
            "1e5",
            "01.5",
            "0.1234567890123456",
        ] {
            assert!(!is_plain_decimal(text), "{text}");
        }
        for text in ["0.5", "-12.25", "0.000000000000001", "123456789012.125"] {
            assert!(is_plain_decimal(text), "{text}");
        }
    }

    #[test]
    fn a_member_is_cut_out_of_an_object_with_its_comma() {
        for (text, expected, value) in [
            (
                r#"{"a":1,"_m":{"t":"x"}}"#,
                r#"{"a":1}"#,
                Some(r#"{"t":"x"}"#),
            ),
            (r#"{"_m":[1,"]"],"a":1}"#, r#"{"a":1}"#, Some(r#"[1,"]"]"#)),
            (r#"{ "_m" : "}" }"#, r#"{ }"#, Some(r#""}""#)),
            (
                r#"{"a":{"_m":1},"b":"_m","_m":null,"c":2}"#,
                r#"{"a":{"_m":1},"b":"_m","c":2}"#,
                Some("null"),
            ),
            (r#"{"a":1}"#, r#"{"a":1}"#, None),
            (r#"{}"#, r#"{}"#, None),
            (r#"{"_m":-1.5e3}"#, r#"{}"#, Some("-1.5e3")),
        ] {
            let (rest, found) = without_member(text, "_m");
            assert_eq!(rest, expected, "{text}");
            assert_eq!(found, value, "{text}");
            serde_json::from_str::<Value>(&rest).expect("still JSON");
        }
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let (expected, scanned, repeats) = both(r#"{"a":1,"b":{"x":1,"x":[2]},"a":3}"#);
        assert_eq!(scanned, expected);
        assert_eq!(scanned, r#"{"a":3,"b":{"x":[2]}}"#);
        assert!(repeats);
    }

    #[test]
    fn generated_documents_match_too() {
        // A small deterministic generator: objects, arrays, escaped strings and numbers of
        // every spelling, nested.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn generate(next: &mut impl FnMut(u64) -> u64, depth: u32, out: &mut String) {
            const ATOMS: [&str; 14] = [
                "0",
                "-1",
                "1.50",
                "3e2",
                "-0.0",
                "99999999999999999999",
                "true",
                "false",
                "null",
                r#""plain""#,
                r#""tab\there""#,
                r#""\u00e9t\u00e9""#,
                r#""é""#,
                "1234567.125",
            ];
            const KEYS: [&str; 7] = [
                r#""a""#,
                r#""b""#,
                r#""\u0061""#,
                r#""é""#,
                r#""A""#,
                r#""long key""#,
                r#""""#,
            ];
            match if depth > 3 { 2 } else { next(3) } {
                0 => {
                    out.push('{');
                    for i in 0..next(5) {
                        if i > 0 {
                            out.push_str(" ,");
                        }
                        out.push_str(KEYS[next(KEYS.len() as u64) as usize]);
                        out.push_str(": ");
                        generate(next, depth + 1, out);
                    }
                    out.push('}');
                }
                1 => {
                    out.push('[');
                    for i in 0..next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        generate(next, depth + 1, out);
                    }
                    out.push(']');
                }
                _ => out.push_str(ATOMS[next(ATOMS.len() as u64) as usize]),
            }
        }
        for _ in 0..2_000 {
            let mut text = String::new();
            generate(&mut next, 0, &mut text);
            let (expected, scanned, _) = both(&text);
            assert_eq!(scanned, expected, "{text}");
        }
    }
}
