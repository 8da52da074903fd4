//! Positions in JSON text: the line and column of the value a JSON pointer names.
//!
//! Only documents that fail are located, so this re-scans the raw text instead of keeping spans
//! for every document. The text is known to be valid JSON (it parsed), but the scanner still
//! never panics or loops on anything else: it gives up with `None`.

use std::borrow::Cow;

/// Line and column (both 1-based; the column counts characters, not bytes) of byte `offset`.
pub(crate) fn line_col(text: &[u8], offset: usize) -> (u64, u64) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = memchr::memchr_iter(b'\n', before).count() as u64 + 1;
    let start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
    (line, chars(&before[start..]) + 1)
}

/// The character column (1-based) of 1-based byte column `byte_col` on 1-based line `line`, as
/// serde_json reports positions in bytes.
pub(crate) fn char_col(text: &[u8], line: usize, byte_col: usize) -> u64 {
    let start = if line <= 1 {
        0
    } else {
        match memchr::memchr_iter(b'\n', text).nth(line - 2) {
            Some(p) => p + 1,
            None => return byte_col.max(1) as u64,
        }
    };
    let end = (start + byte_col.saturating_sub(1)).min(text.len());
    chars(&text[start..end]) + 1
}

/// Characters in UTF-8 `bytes` (continuation bytes do not count).
fn chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64
}

/// The byte offset of the value `pointer` (RFC 6901) names in the JSON `text`.
pub(crate) fn value_offset(text: &[u8], pointer: &str) -> Option<usize> {
    let mut scan = Scan { s: text, i: 0 };
    scan.ws();
    if pointer.is_empty() {
        return Some(scan.i);
    }
    let rest = pointer.strip_prefix('/')?;
    for raw in rest.split('/') {
        let token = unescape_token(raw);
        scan.ws();
        match scan.peek()? {
            b'{' => {
                let found = scan.members().find_last(&token)?;
                scan.i = found;
            }
            b'[' => {
                let index: usize = token.parse().ok()?;
                scan.i += 1;
                for _ in 0..index {
                    scan.ws();
                    scan.skip_value()?;
                    scan.ws();
                    scan.expect(b',')?;
                }
                scan.ws();
                if scan.peek()? == b']' {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(scan.i)
}

/// The value `pointer` names, as written in the JSON `text` (its digits, escapes and member
/// order kept), with the whitespace between its tokens removed so that it reads on one line as
/// serde_json's compact rendering does.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn value_text(text: &[u8], pointer: &str) -> Option<String> {
    value_text_at(text, value_offset(text, pointer)?).map(Cow::into_owned)
}

/// [`value_text`] of the value at byte offset `start` (from [`value_offset`]), borrowed from
/// the text when it has no whitespace to remove (a string, a number, a literal).
pub(crate) fn value_text_at(text: &[u8], start: usize) -> Option<Cow<'_, str>> {
    let mut scan = Scan { s: text, i: start };
    scan.skip_value()?;
    let raw = text.get(start..scan.i)?;
    if !matches!(raw.first(), Some(b'{' | b'[')) {
        // Nothing but whitespace inside strings, which stays.
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The byte offset of the key `key` (its opening quote) in the object at `object`.
pub(crate) fn key_offset(text: &[u8], object: usize, key: &str) -> Option<usize> {
    let mut scan = Scan { s: text, i: object };
    if scan.peek()? != b'{' {
        return None;
    }
    let mut members = scan.members();
    let mut found = None;
    while let Some((key_at, name, _)) = members.next_member() {
        if name == key {
            found = Some(key_at);
        }
    }
    found
}

/// `~1` → `/`, `~0` → `~` (in that order, as RFC 6901 says).
fn unescape_token(raw: &str) -> Cow<'_, str> {
    if raw.contains('~') {
        Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(raw)
    }
}

/// A string as found in the text.
enum Key<'a> {
    /// Without escapes: its bytes.
    Raw(&'a [u8]),
    /// With escapes: the offsets after its opening and after its closing quote.
    Escaped(usize, usize),
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

/// Iterates over the members of the object the scanner is at.
struct Members<'s, 'a> {
    scan: &'s mut Scan<'a>,
    started: bool,
    done: bool,
}

impl<'a> Members<'_, 'a> {
    /// The next member: offset of its key, the key (unescaped), offset of its value.
    fn next_member(&mut self) -> Option<(usize, Cow<'a, str>, usize)> {
        let (key_at, key, value_at) = self.next_key_at(|scan| scan.string())?;
        Some((key_at, key, value_at))
    }

    /// The next member's key (read by `read`) and the offset of its value.
    fn next_key<K>(&mut self, read: impl FnOnce(&mut Scan<'a>) -> Option<K>) -> Option<(K, usize)> {
        self.next_key_at(read)
            .map(|(_, key, value_at)| (key, value_at))
    }

    /// The next member: offset of its key, its key read by `read`, offset of its value.
    fn next_key_at<K>(
        &mut self,
        read: impl FnOnce(&mut Scan<'a>) -> Option<K>,
    ) -> Option<(usize, K, usize)> {
        if self.done {
            return None;
        }
        let scan = &mut *self.scan;
        if !self.started {
            self.started = true;
            scan.i += 1; // '{'
        } else {
            scan.ws();
            scan.skip_value().or_else(|| {
                self.done = true;
                None
            })?;
            scan.ws();
            if scan.peek() == Some(b',') {
                scan.i += 1;
            } else {
                self.done = true;
                return None;
            }
        }
        scan.ws();
        if scan.peek() != Some(b'"') {
            self.done = true;
            return None;
        }
        let key_at = scan.i;
        let Some(key) = read(scan) else {
            self.done = true;
            return None;
        };
        scan.ws();
        if scan.expect(b':').is_none() {
            self.done = true;
            return None;
        }
        scan.ws();
        let value_at = scan.i;
        Some((key_at, key, value_at))
    }

    /// The value offset of the last member called `token` (serde_json keeps the last of
    /// duplicate keys, so that is the value that was validated).
    fn find_last(mut self, token: &str) -> Option<usize> {
        let mut found = None;
        while let Some((key, value_at)) = self.next_key(|scan| scan.key()) {
            let equal = match key {
                Key::Raw(raw) => raw == token.as_bytes(),
                Key::Escaped(start, end) => {
                    self.scan.unescape(start, end).is_some_and(|k| k == token)
                }
            };
            if equal {
                found = Some(value_at);
            }
        }
        found
    }
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn members(&mut self) -> Members<'_, 'a> {
        Members {
            scan: self,
            started: false,
            done: false,
        }
    }

    /// Skips the string at the cursor (which is at its opening quote).
    fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let rel = memchr::memchr2(b'"', b'\\', self.s.get(self.i..)?)?;
            self.i += rel;
            if self.s[self.i] == b'\\' {
                self.i += 2;
            } else {
                self.i += 1;
                return Some(());
            }
        }
    }

    /// Reads the string at the cursor, unescaped.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        match self.key()? {
            Key::Raw(raw) => std::str::from_utf8(raw).ok().map(Cow::Borrowed),
            Key::Escaped(start, end) => self.unescape(start, end),
        }
    }

    /// Reads the string at the cursor: its raw bytes when it has no escape (compared as they
    /// are: a key equals a token exactly when its bytes do), else where it starts.
    fn key(&mut self) -> Option<Key<'a>> {
        let start = self.i + 1;
        self.skip_string()?;
        let raw = self.s.get(start..self.i - 1)?;
        if !raw.contains(&b'\\') {
            return Some(Key::Raw(raw));
        }
        Some(Key::Escaped(start, self.i))
    }

    /// The string between `start` (after its opening quote) and `end` (after its closing
    /// quote), unescaped.
    fn unescape(&self, start: usize, end: usize) -> Option<Cow<'a, str>> {
        // Let serde_json do the unescaping (surrogate pairs included): it is rare.
        serde_json::from_slice::<String>(self.s.get(start - 1..end)?)
            .ok()
            .map(Cow::Owned)
    }

    /// Skips the value at the cursor.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "acme": {
    "serial": "123",
    "colour": "red"
  },
  "a/b": [1, {"x~y": "é"}, [2, 3]],
  "esc\"aped": true,
  "dup": 1,
  "dup": 2
}"#;

    fn at(pointer: &str) -> Option<(u64, u64)> {
        value_offset(DOC.as_bytes(), pointer).map(|o| line_col(DOC.as_bytes(), o))
    }

    #[test]
    fn pointers_map_to_the_value_they_name() {
        assert_eq!(at(""), Some((1, 1)));
        assert_eq!(at("/acme"), Some((2, 11)));
        assert_eq!(at("/acme/serial"), Some((3, 15)));
        assert_eq!(at("/acme/colour"), Some((4, 15)));
        assert_eq!(at("/a~1b"), Some((6, 10)));
        assert_eq!(at("/a~1b/0"), Some((6, 11)));
        assert_eq!(at("/a~1b/1/x~0y"), Some((6, 22)));
        assert_eq!(at("/a~1b/2/1"), Some((6, 32)));
        assert_eq!(at("/esc\"aped"), Some((7, 16)));
        assert_eq!(
            at("/dup"),
            Some((9, 10)),
            "the last duplicate is the validated one"
        );
    }

    #[test]
    fn missing_or_malformed_paths_give_none() {
        assert_eq!(at("/nope"), None);
        assert_eq!(at("/a~1b/3"), None);
        assert_eq!(at("/a~1b/x"), None);
        assert_eq!(at("/acme/serial/0"), None);
        assert_eq!(at("acme"), None);
        assert_eq!(value_offset(b"{\"a\": ", "/a"), Some(6));
        assert_eq!(value_offset(b"{\"a", "/a"), None);
        assert_eq!(value_offset(b"", "/a"), None);
    }

    #[test]
    fn values_are_echoed_as_written_on_one_line() {
        let text = "{\"n\": 89460715903439706236, \"f\": 1.50E+3,\n \"o\": {\"b\": [1,\n 2 ],\n  \"a\": \"x \\\" \\u00e9\"}}";
        let echo = |p| value_text(text.as_bytes(), p);
        assert_eq!(echo("/n").as_deref(), Some("89460715903439706236"));
        assert_eq!(echo("/f").as_deref(), Some("1.50E+3"));
        assert_eq!(
            echo("/o").as_deref(),
            Some("{\"b\":[1,2],\"a\":\"x \\\" \\u00e9\"}"),
            "whitespace inside strings stays"
        );
        assert_eq!(echo("/o/b/1").as_deref(), Some("2"));
        assert_eq!(echo("/nope"), None);
    }

    #[test]
    fn keys_are_found_too() {
        let obj = value_offset(DOC.as_bytes(), "/acme").unwrap();
        let key = key_offset(DOC.as_bytes(), obj, "colour").unwrap();
        assert_eq!(line_col(DOC.as_bytes(), key), (4, 5));
        assert_eq!(key_offset(DOC.as_bytes(), obj, "nope"), None);
    }

    #[test]
    fn columns_count_characters() {
        let text = "{\"é\": [\"ü\", 1]}".as_bytes();
        let o = value_offset(text, "/é/1").unwrap();
        assert_eq!(line_col(text, o), (1, 13));
        // serde_json's byte column 15 on that line is character column 13.
        assert_eq!(char_col(text, 1, 15), 13);
        assert_eq!(char_col(b"a\nbc\nd", 3, 1), 1);
        assert_eq!(char_col(b"a", 9, 4), 4);
    }
}
