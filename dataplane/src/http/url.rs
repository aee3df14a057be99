//! URL targets and percent-coding, sans-IO: the one place that splits a request target into
//! path, query and fragment, walks query pairs, and decodes or encodes `%XX` escapes.
//!
//! Two semantics, and every caller names the one it uses ([`Coding`]):
//! - [`Coding::Rfc3986`] (RFC 3986 §2.1): `%XX` is a byte, `+` is itself. Paths and template
//!   parameters (`context.Request.MatchedParameters`), `Uri.UnescapeDataString` and
//!   `Uri.EscapeDataString`, and the query parameters `set-query-parameter` and `rewrite-uri` write.
//! - [`Coding::Form`] (`application/x-www-form-urlencoded`): as above, and `+` is a space. What
//!   APIM (ASP.NET's query collection) uses for query names and values: `context.Request.Url.Query`,
//!   the subscription-key query parameter, `Body.AsFormUrlEncodedContent()`, and
//!   `WebUtility.UrlDecode` / `WebUtility.UrlEncode`.
//!
//! Malformed escapes are kept literally, everywhere: a `%` not followed by two hex digits (`%`,
//! `%G1`, `%+F`, `%-1`, `%1` at the end) is the byte `%`, and the bytes after it are read as if it
//! were any other byte (so under [`Coding::Form`] `%+F` is `% F`). This is what .NET's
//! `Uri.UnescapeDataString` and `WebUtility.UrlDecode` do; no entry point refuses input.
//!
//! Nothing here allocates unless asked to: [`Target`] and [`QueryPairs`] borrow, decoding borrows
//! when there is nothing to decode ([`percent_decode`]) or writes into the caller's scratch
//! ([`percent_decode_into`]), and encoding writes into the caller's buffer ([`percent_encode`]).

use std::borrow::Cow;
use std::fmt;

/// Which percent-coding a URL part uses (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 3986: `%XX` escapes only; encoding keeps the unreserved bytes (`A-Z a-z 0-9 - . _ ~`).
    Rfc3986,
    /// `application/x-www-form-urlencoded`: `+` is a space as well; encoding keeps what
    /// `WebUtility.UrlEncode` keeps (`A-Z a-z 0-9 - _ . ! * ( )`) and writes a space as `+`.
    Form,
}

/// A request target split at its first `?` and first `#` (RFC 3986 §3): origin-form (`/p?q`),
/// absolute-form (`http://host/p?q`: scheme and authority as well) or anything else (`*` is a
/// path of one byte). Splitting never fails; what a part may contain is the caller's check.
/// Parsing finds where the path ends; the query and fragment are found when asked for, so that a
/// caller who wants only the path (the router) reads no byte past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    scheme: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    /// From the path to the end: the origin-form part of an absolute-form target.
    rest: &'a [u8],
    /// Where the path ends in `rest` (so at most its length): at the first `?` or `#`, or the end.
    path_end: usize,
}

impl<'a> Target<'a> {
    /// Splits `target`. A `?` after the first `#` belongs to the fragment; `scheme://` (a letter,
    /// then letters, digits, `+-.`) starts an absolute-form target whose authority ends at the
    /// first `/`, `?` or `#`.
    pub fn parse(target: &'a [u8]) -> Self {
        let (scheme, authority, rest) = match split_scheme(target) {
            Some((scheme, after)) => {
                let end = after.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(after.len());
                let (authority, rest) = after.split_at(end);
                (Some(scheme), Some(authority), rest)
            }
            None => (None, None, target),
        };
        let path_end = rest.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(rest.len());
        Self { scheme, authority, rest, path_end }
    }

    /// The scheme of an absolute-form target (`http`, as written).
    pub fn scheme(&self) -> Option<&'a [u8]> {
        self.scheme
    }

    /// The authority of an absolute-form target (`host[:port]`, possibly empty).
    pub fn authority(&self) -> Option<&'a [u8]> {
        self.authority
    }

    /// The path, still percent-encoded (empty for `http://host?q`).
    pub fn path(&self) -> &'a [u8] {
        &self.rest[..self.path_end]
    }

    /// The query without its `?`, still percent-encoded; `None` without a `?`, `Some("")` for a
    /// bare `?`.
    pub fn query(&self) -> Option<&'a [u8]> {
        match self.rest[self.path_end..].split_first() {
            Some((b'?', after)) => Some(&after[..after.iter().position(|&b| b == b'#').unwrap_or(after.len())]),
            _ => None,
        }
    }

    /// The fragment without its `#`; `None` without a `#`.
    pub fn fragment(&self) -> Option<&'a [u8]> {
        let after_path = &self.rest[self.path_end..];
        let hash = after_path.iter().position(|&b| b == b'#')?;
        Some(&after_path[hash + 1..])
    }

    /// Everything from the path on (path, `?query`, `#fragment`): the whole target unless it is
    /// absolute-form.
    pub fn origin_form(&self) -> &'a [u8] {
        self.rest
    }
}

/// `scheme` and what follows `scheme://`, when `target` starts with one.
fn split_scheme(target: &[u8]) -> Option<(&[u8], &[u8])> {
    if !target.first()?.is_ascii_alphabetic() {
        return None;
    }
    let colon = target.iter().position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    let (scheme, after) = target.split_at(colon);
    Some((scheme, after.strip_prefix(b"://")?))
}

/// The `(name, value)` pairs of a query (without its `?`), raw (still percent-encoded), in order:
/// split at `&`, empty pairs skipped, a pair without `=` has an empty value. Decode each with
/// [`Coding::Form`] to read it as APIM does.
pub fn query_pairs(query: &[u8]) -> QueryPairs<'_> {
    QueryPairs { rest: Some(query) }
}

/// The iterator [`query_pairs`] returns.
#[derive(Debug, Clone)]
pub struct QueryPairs<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let pair = match rest.iter().position(|&b| b == b'&') {
                Some(amp) => {
                    self.rest = Some(&rest[amp + 1..]);
                    &rest[..amp]
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if pair.is_empty() {
                continue;
            }
            return Some(match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            });
        }
    }
}

/// The bytes `input` decodes to under `coding`, one at a time (malformed escapes kept literally).
pub fn decoded(input: &[u8], coding: Coding) -> Decoded<'_> {
    Decoded { rest: input, coding }
}

/// The iterator [`decoded`] returns.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    rest: &'a [u8],
    coding: Coding,
}

impl Decoded<'_> {
    /// The next byte and whether it came from an escape (or a `+` read as a space).
    fn next_with_origin(&mut self) -> Option<(u8, bool)> {
        let (&byte, after) = self.rest.split_first()?;
        if byte == b'%' {
            if let [high, low, tail @ ..] = after {
                if let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low)) {
                    self.rest = tail;
                    return Some((high << 4 | low, true));
                }
            }
        }
        self.rest = after;
        match byte {
            b'+' if self.coding == Coding::Form => Some((b' ', true)),
            byte => Some((byte, false)),
        }
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        self.next_with_origin().map(|(byte, _)| byte)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.rest.len().div_ceil(3), Some(self.rest.len()))
    }
}

/// Whether decoding `input` under `coding` changes it (a well-formed escape, or `+` in a form).
pub fn needs_decoding(input: &[u8], coding: Coding) -> bool {
    let mut bytes = decoded(input, coding);
    while let Some((_, changed)) = bytes.next_with_origin() {
        if changed {
            return true;
        }
    }
    false
}

/// `input` percent-decoded under `coding`: borrowed when nothing in it is encoded.
pub fn percent_decode(input: &[u8], coding: Coding) -> Cow<'_, [u8]> {
    if needs_decoding(input, coding) { Cow::Owned(decoded(input, coding).collect()) } else { Cow::Borrowed(input) }
}

/// `input` percent-decoded under `coding` as text: borrowed when nothing in it is encoded and it
/// is UTF-8. Invalid UTF-8 becomes U+FFFD, as `WebUtility.UrlDecode` does (.NET's
/// `Uri.UnescapeDataString` keeps such escapes as written instead: not modelled).
pub fn percent_decode_str(input: &[u8], coding: Coding) -> Cow<'_, str> {
    match percent_decode(input, coding) {
        Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes),
        Cow::Owned(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Cow::Owned(text),
            Err(invalid) => Cow::Owned(String::from_utf8_lossy(invalid.as_bytes()).into_owned()),
        },
    }
}

/// Decodes `input` under `coding` into `out`; the decoded length, or `None` if it does not fit.
pub fn percent_decode_into(input: &[u8], coding: Coding, out: &mut [u8]) -> Option<usize> {
    let mut written = 0;
    for byte in decoded(input, coding) {
        *out.get_mut(written)? = byte;
        written += 1;
    }
    Some(written)
}

/// Whether `input` decodes under `coding` to exactly `expected` (no allocation).
pub fn decodes_to(input: &[u8], coding: Coding, expected: &[u8]) -> bool {
    // Decoding never lengthens: a longer `expected` is answered without reading `input`.
    expected.len() <= input.len() && decoded(input, coding).eq(expected.iter().copied())
}

/// `input` percent-encoded under `coding`, to be written with `write!` into a `String` or a
/// `Vec<u8>` (or `.to_string()`): upper-case hex, as .NET writes it.
pub fn percent_encode(input: &[u8], coding: Coding) -> PercentEncode<'_> {
    PercentEncode { input, coding }
}

/// What [`percent_encode`] returns: displays as the encoded text.
#[derive(Debug, Clone, Copy)]
pub struct PercentEncode<'a> {
    input: &'a [u8],
    coding: Coding,
}

impl fmt::Display for PercentEncode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.input;
        while !rest.is_empty() {
            let kept = rest.iter().position(|&b| !keeps(b, self.coding)).unwrap_or(rest.len());
            let (run, after) = rest.split_at(kept);
            // The kept bytes are ASCII, so the run is UTF-8.
            f.write_str(std::str::from_utf8(run).map_err(|_| fmt::Error)?)?;
            let Some((&byte, after)) = after.split_first() else { break };
            if byte == b' ' && self.coding == Coding::Form {
                f.write_str("+")?;
            } else {
                let escape = [b'%', HEX_UPPER[usize::from(byte >> 4)], HEX_UPPER[usize::from(byte & 15)]];
                f.write_str(std::str::from_utf8(&escape).map_err(|_| fmt::Error)?)?;
            }
            rest = after;
        }
        Ok(())
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `byte` is written as itself under `coding`.
fn keeps(byte: u8, coding: Coding) -> bool {
    byte.is_ascii_alphanumeric()
        || match coding {
            Coding::Rfc3986 => matches!(byte, b'-' | b'.' | b'_' | b'~'),
            Coding::Form => matches!(byte, b'-' | b'_' | b'.' | b'!' | b'*' | b'(' | b')'),
        }
}

/// The value of an ASCII hex digit (only `0-9 a-f A-F`: no sign, unlike `from_str_radix`).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Appends the backend request target: `base_path` + the rest of the target after the API
/// prefix (with its query); `/` when both are empty.
pub fn write_backend_target(out: &mut Vec<u8>, base_path: &str, remainder: &[u8]) {
    out.extend_from_slice(base_path.as_bytes());
    if base_path.is_empty() && remainder.first() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(remainder);
}

#[cfg(test)]
mod tests;
