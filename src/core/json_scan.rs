//! One validating pass over a body: checks that it is a JSON object (the
//! grammar of RFC 8259, nesting up to [`MAX_DEPTH`] levels) and, in
//! the same pass, splits the levels the normaliser reads into members, so
//! their bytes are not scanned again (only keys with escapes are decoded
//! by a second reader). Before it, serde_json validated the body and
//! `json_trusted` then scanned the payload again for its ids.
//!
//! It is at least as strict as serde_json, never less: any body it does
//! not accept is read again the old way (serde_json, then the trusted
//! split), which accepts it or names its fault as before. So a rejection's
//! reason and text stay serde_json's; only the accepted bodies take this
//! path, and they are split exactly as serde_json and `json_trusted` split
//! them (`tests::bodies_split_as_serde_json_and_the_trusted_split_do` and
//! the property tests beside it).
//!
//! Strings are checked for what serde_json refuses in any string (a
//! control character, an unknown escape, a `\u` without four hex digits);
//! lone surrogates are refused only where a string is decoded, as before.

use std::borrow::Cow;

use crate::core::json_string::{self, JsonFault};
use crate::core::json_trusted::{Members, Nested};

/// Most objects split at one level: a body has one `payload` or `data`, a
/// payload one `referenceCompany` and one `connection`. Past it, an object
/// is validated but not split, so a body repeating such a key (refused
/// later as a duplicate) cannot make the split cost more memory than the
/// members it holds: each split object reserves 16 members (640 bytes), so
/// 1 MiB of `"data":{"a":1},` would otherwise hold about 45 MB at once.
const MAX_SPLIT_PER_LEVEL: usize = 2;

/// Deepest nesting this pass reads, the top-level object counted (it
/// recurses: the bound keeps a hostile body off the stack). A deeper body
/// is read the old way: serde_json skips any depth without recursion.
pub const MAX_DEPTH: usize = 128;

/// An object split with the objects under some of its keys (as
/// `json_trusted::object_members_nested` gives them), or the fault of a
/// key in it.
pub type SplitObject<'a> = Result<(Members<'a>, Nested<'a>), JsonFault>;

/// A body's top-level object split in the validating pass.
#[derive(Debug)]
pub struct Scanned<'a> {
    /// Its members, keys decoded, values as text.
    pub top: Members<'a>,
    /// For each top-level member whose key `split` accepted and whose
    /// value is an object (by index in `top`): that object's members and
    /// those of its own members `nested` accepted, exactly as
    /// `json_trusted::object_members_nested` gives them, or the fault of a
    /// key there.
    pub split: Vec<(usize, SplitObject<'a>)>,
}

/// Validates `text` as one JSON object (surrounding whitespace allowed)
/// and splits it; `None` when it is not one, or a top-level key does not
/// decode (the caller reads it again the old way, to name the fault).
pub fn scan<'a>(
    text: &'a str,
    split: &dyn Fn(&str) -> bool,
    nested: &dyn Fn(&str) -> bool,
) -> Option<Scanned<'a>> {
    let mut s = Scan {
        text,
        i: 0,
        depth: 0,
    };
    s.space();
    if s.peek() != Some(b'{') {
        return None;
    }
    let mut bodies = Vec::new();
    let (top, fault) = s
        .object(|s, key, at| {
            if !split(key) || bodies.len() >= MAX_SPLIT_PER_LEVEL {
                return Ok(false);
            }
            let mut inner = Vec::new();
            let (members, fault) = s.object(|s, key, at| {
                if !nested(key) || inner.len() >= MAX_SPLIT_PER_LEVEL {
                    return Ok(false);
                }
                let (members, fault) = s.object(|_, _, _| Ok(false))?;
                inner.push((at, fault.map_or(Ok(members), Err)));
                Ok(true)
            })?;
            bodies.push((at, fault.map_or(Ok((members, inner)), Err)));
            Ok(true)
        })
        .ok()?;
    s.space();
    if s.i != text.len() || fault.is_some() {
        return None;
    }
    Some(Scanned { top, split: bodies })
}

/// The body is not valid JSON (or nests deeper than [`MAX_DEPTH`]).
struct Invalid;

struct Scan<'a> {
    text: &'a str,
    i: usize,
    depth: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), Invalid> {
        if self.peek() != Some(byte) {
            return Err(Invalid);
        }
        self.i += 1;
        Ok(())
    }

    /// Into a container: one level deeper, within the bound. Every
    /// container left is left through [`Scan::leave`].
    fn enter(&mut self) -> Result<(), Invalid> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Invalid);
        }
        self.i += 1;
        self.space();
        Ok(())
    }

    /// Past a container's closing bracket, one level up.
    fn leave(&mut self) {
        self.i += 1;
        self.depth -= 1;
    }

    /// At an empty container's closing bracket: leaves it (true).
    fn left_empty(&mut self, close: u8) -> bool {
        let empty = self.peek() == Some(close);
        if empty {
            self.leave();
        }
        empty
    }

    /// After a container's member or item: true at its end (left), false
    /// after a `,` (and the space after it).
    fn next_or_end(&mut self, close: u8) -> Result<bool, Invalid> {
        self.space();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.space();
                Ok(false)
            }
            Some(b) if b == close => {
                self.leave();
                Ok(true)
            }
            _ => Err(Invalid),
        }
    }

    /// At a `{`: validates the object and returns its members, with the
    /// first fault of a key that did not decode (its member is kept, key
    /// empty). A member whose value is an object is offered to `split`
    /// first (with its key and index), which reads it (true) or declines
    /// (false) without moving the cursor.
    fn object(
        &mut self,
        mut split: impl FnMut(&mut Self, &str, usize) -> Result<bool, Invalid>,
    ) -> Result<(Members<'a>, Option<JsonFault>), Invalid> {
        self.enter()?;
        let mut fault = None;
        if self.left_empty(b'}') {
            return Ok((Vec::new(), fault));
        }
        // Codat's objects rarely have more than a dozen members.
        let mut members = Vec::with_capacity(16);
        loop {
            let (quoted, escaped) = self.string()?;
            let key = match quoted.get(1..quoted.len() - 1) {
                // Without an escape the text between the quotes is the key.
                Some(plain) if !escaped => Cow::Borrowed(plain),
                _ => json_string::decode_scanned(quoted, escaped).unwrap_or_else(|f| {
                    fault.get_or_insert(f);
                    Cow::Borrowed("")
                }),
            };
            self.space();
            self.eat(b':')?;
            self.space();
            let start = self.i;
            let read = self.peek() == Some(b'{') && split(self, &key, members.len())?;
            if !read {
                self.value()?;
            }
            let value = self.text.get(start..self.i).ok_or(Invalid)?;
            members.push((key, value));
            if self.next_or_end(b'}')? {
                return Ok((members, fault));
            }
        }
    }

    /// Validates one value, at its first byte.
    fn value(&mut self) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => self.skip_object(),
            Some(b'[') => self.skip_array(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Invalid),
        }
    }

    fn skip_object(&mut self) -> Result<(), Invalid> {
        self.enter()?;
        if self.left_empty(b'}') {
            return Ok(());
        }
        loop {
            self.string()?;
            self.space();
            self.eat(b':')?;
            self.space();
            self.value()?;
            if self.next_or_end(b'}')? {
                return Ok(());
            }
        }
    }

    fn skip_array(&mut self) -> Result<(), Invalid> {
        self.enter()?;
        if self.left_empty(b']') {
            return Ok(());
        }
        loop {
            self.value()?;
            if self.next_or_end(b']')? {
                return Ok(());
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        let end = self.i + word.len();
        if self.text.as_bytes().get(self.i..end) != Some(word) {
            return Err(Invalid);
        }
        self.i = end;
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; what
    /// follows is the caller's to check (`01` fails there, at the `1`).
    fn number(&mut self) -> Result<(), Invalid> {
        let b = self.text.as_bytes();
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(Invalid),
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(Invalid);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return Err(Invalid);
            }
            i = end;
        }
        self.i = i;
        Ok(())
    }

    /// At a `"`: validates the string, moves past it and returns its text
    /// (quotes included) and whether it holds an escape.
    fn string(&mut self) -> Result<(&'a str, bool), Invalid> {
        let b = self.text.as_bytes();
        let start = self.i;
        if b.get(start) != Some(&b'"') {
            return Err(Invalid);
        }
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = skip_string_text(b, i);
            match b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
                        Some(b'u') if b.get(i + 2..i + 6).is_some_and(is_hex4) => 6,
                        _ => return Err(Invalid),
                    };
                }
                // A control character, or the end without a closing quote.
                _ => return Err(Invalid),
            }
        }
        self.i = i + 1;
        let text = self.text.get(start..self.i).ok_or(Invalid)?;
        Ok((text, escaped))
    }
}

fn is_hex4(digits: &[u8]) -> bool {
    digits.iter().all(u8::is_ascii_hexdigit)
}

/// The index of the first `"`, `\` or control character (below 0x20) at
/// or after `i` (or the end), eight bytes at a time.
fn skip_string_text(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each test is exactly the first byte it
    // looks for (a borrow only ever misfires above it), so the lowest of
    // the three is the first byte that ends a plain run.
    let has = |x: u64, b: u8| {
        let y = x ^ (ONES * u64::from(b));
        y.wrapping_sub(ONES) & !y & HIGH
    };
    let below_space = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = has(x, b'"') | has(x, b'\\') | below_space(x);
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes
        .get(i)
        .is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20)
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
