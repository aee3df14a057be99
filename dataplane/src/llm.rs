//! The token counts of OpenAI-compatible responses (Azure OpenAI included), for the token metric
//! policies: a sans-IO scanner that watches the response body as the relay sends it and keeps
//! the top-level `usage` object, without buffering the body. A JSON body's `usage` is read where
//! it stands; a streamed (`text/event-stream`) body is read event by event, and the last
//! `data:` event with a `usage` wins (OpenAI sends it in the final event when asked to with
//! `stream_options.include_usage`). Chunked framing is undone on the way.

pub mod content_safety;
pub mod tokens;

use crate::policy::state::TokenUsage;

/// The `usage` object is kept up to this size (real ones are about 100 bytes, 400 with details).
pub const USAGE_BYTES_MAX: usize = 4096;
/// A key at the top level is compared up to this length (`usage` is 5).
const KEY_BYTES_MAX: usize = 8;

/// Watches one response body for its `usage`.
#[derive(Debug)]
pub struct UsageScanner {
    chunked: Option<Chunk>,
    lines: Option<Line>,
    json: JsonScan,
    found: Option<TokenUsage>,
}

/// Where the chunked decoder stands.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size { size: u64, extension: bool },
    Data(u64),
    DataEnd(u8),
    Done,
}

/// Where the event-stream reader stands in a line.
#[derive(Debug, Clone, Copy)]
enum Line {
    /// At the start of a line, `n` bytes of `data:` matched.
    Prefix(usize),
    Data,
    Skip,
}

const DATA_PREFIX: &[u8] = b"data:";

impl UsageScanner {
    /// A scanner for a body that is `chunked` on the wire and an event stream when `events`.
    pub fn new(chunked: bool, events: bool) -> Self {
        Self {
            chunked: chunked.then_some(Chunk::Size { size: 0, extension: false }),
            lines: events.then_some(Line::Prefix(0)),
            json: JsonScan::default(),
            found: None,
        }
    }

    /// Body bytes as they went to the client (with the chunked framing, when there is one).
    pub fn push(&mut self, mut bytes: &[u8]) {
        let Some(mut chunk) = self.chunked else {
            self.body(bytes);
            return;
        };
        while let Some((&byte, rest)) = bytes.split_first() {
            match chunk {
                Chunk::Size { size, extension } => {
                    bytes = rest;
                    chunk = match byte {
                        b'\n' if size == 0 => Chunk::Done,
                        b'\n' => Chunk::Data(size),
                        b';' => Chunk::Size { size, extension: true },
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if !extension => {
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            Chunk::Size { size: size.saturating_mul(16).saturating_add(u64::from(digit)), extension }
                        }
                        _ => chunk,
                    };
                }
                Chunk::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let (data, rest) = bytes.split_at(take);
                    self.body(data);
                    bytes = rest;
                    let left = left - take as u64;
                    chunk = if left == 0 { Chunk::DataEnd(2) } else { Chunk::Data(left) };
                }
                Chunk::DataEnd(n) => {
                    bytes = rest;
                    chunk = if n <= 1 { Chunk::Size { size: 0, extension: false } } else { Chunk::DataEnd(n - 1) };
                }
                Chunk::Done => break,
            }
        }
        self.chunked = Some(chunk);
    }

    /// The usage found, once the body ended.
    pub fn finish(mut self) -> Option<TokenUsage> {
        if matches!(self.lines, Some(Line::Data)) {
            self.end_line();
        }
        self.found.or_else(|| if self.lines.is_none() { self.json.usage() } else { None })
    }

    fn body(&mut self, bytes: &[u8]) {
        let Some(mut line) = self.lines else {
            for &byte in bytes {
                self.json.push(byte);
            }
            return;
        };
        for &byte in bytes {
            line = match (line, byte) {
                (Line::Data, b'\n') => {
                    self.end_line();
                    Line::Prefix(0)
                }
                (_, b'\n') => Line::Prefix(0),
                (Line::Data, _) => {
                    self.json.push(byte);
                    Line::Data
                }
                (Line::Prefix(n), _) if DATA_PREFIX.get(n) == Some(&byte) => {
                    if n + 1 == DATA_PREFIX.len() {
                        self.json = JsonScan::default();
                        Line::Data
                    } else {
                        Line::Prefix(n + 1)
                    }
                }
                (Line::Prefix(n), b'\r') => Line::Prefix(n),
                _ => Line::Skip,
            };
        }
        self.lines = Some(line);
    }

    fn end_line(&mut self) {
        if let Some(usage) = std::mem::take(&mut self.json).usage() {
            self.found = Some(usage);
        }
    }
}

/// A byte-at-a-time JSON walker that knows the depth, whether it is in a string, the last key
/// at the top level, and captures the value of a top-level `usage` key.
#[derive(Debug, Default)]
struct JsonScan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    key: smallvec::SmallVec<[u8; KEY_BYTES_MAX]>,
    key_too_long: bool,
    capture: Option<Vec<u8>>,
    captured: Option<Vec<u8>>,
}

impl JsonScan {
    fn push(&mut self, byte: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            } else if self.depth == 1 && self.capture.is_none() {
                if self.key.len() < KEY_BYTES_MAX {
                    self.key.push(byte);
                } else {
                    self.key_too_long = true;
                }
            }
            self.keep(byte);
            return;
        }
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.capture.is_none() {
                    self.key.clear();
                    self.key_too_long = false;
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                if self.capture.is_some() && self.depth == 1 {
                    self.end_capture();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b',' if self.depth == 1 && self.capture.is_some() => {
                self.end_capture();
                return;
            }
            b':' if self.depth == 1 && self.capture.is_none() => {
                if !self.key_too_long && self.key.as_slice() == b"usage" {
                    self.capture = Some(Vec::new());
                }
                return;
            }
            _ => {}
        }
        self.keep(byte);
    }

    /// Adds a byte to the captured value (dropping a capture that grew past its bound).
    fn keep(&mut self, byte: u8) {
        if let Some(capture) = &mut self.capture {
            if capture.len() < USAGE_BYTES_MAX {
                capture.push(byte);
            } else {
                self.capture = None;
            }
        }
    }

    fn end_capture(&mut self) {
        self.captured = self.capture.take();
    }

    fn usage(&self) -> Option<TokenUsage> {
        parse_usage(self.captured.as_deref()?)
    }
}

/// Reads a `usage` value: chat and completions name `prompt_tokens` and `completion_tokens`, the
/// Responses API `input_tokens` and `output_tokens`; `total_tokens` is their sum when absent.
/// `null` (the events before the last one) is no usage.
pub fn parse_usage(bytes: &[u8]) -> Option<TokenUsage> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object()?;
    let count = |names: &[&str]| names.iter().find_map(|name| object.get(*name).and_then(serde_json::Value::as_u64));
    let prompt = count(&["prompt_tokens", "input_tokens"]);
    let completion = count(&["completion_tokens", "output_tokens"]);
    let total = count(&["total_tokens"]);
    if prompt.is_none() && completion.is_none() && total.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(TokenUsage { prompt, completion, total: total.unwrap_or(prompt + completion) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]], chunked: bool, events: bool) -> Option<TokenUsage> {
        let mut scanner = UsageScanner::new(chunked, events);
        for piece in pieces {
            scanner.push(piece);
        }
        scanner.finish()
    }

    const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"a \"usage\": {\"prompt_tokens\": 99} b"},"usage":{"prompt_tokens":1}}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"x"}"#;

    #[test]
    fn a_json_body_at_every_split() {
        let expected = Some(TokenUsage { prompt: 12, completion: 30, total: 42 });
        let body = CHAT.as_bytes();
        for at in 0..body.len() {
            assert_eq!(scan(&[&body[..at], &body[at..]], false, false), expected, "split at {at}");
        }
        assert_eq!(
            scan(&[br#"{"usage":{"input_tokens":3,"output_tokens":4}}"#], false, false).map(|u| u.total),
            Some(7)
        );
        assert_eq!(scan(&[br#"{"choices":[]}"#], false, false), None);
        assert_eq!(scan(&[br#"{"usage":null}"#], false, false), None);
        assert_eq!(scan(&[br#"{"usage":{"prompt_tokens":1"#], false, false), None, "truncated");
    }

    #[test]
    fn a_chunked_body() {
        let body = CHAT.as_bytes();
        let (a, b) = body.split_at(50);
        let wire = [
            format!("{:x};ext=1\r\n", a.len()).into_bytes(),
            a.to_vec(),
            b"\r\n".to_vec(),
            format!("{:X}\r\n", b.len()).into_bytes(),
            b.to_vec(),
            b"\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        for at in 0..wire.len() {
            let usage = scan(&[&wire[..at], &wire[at..]], true, false);
            assert_eq!(usage.map(|u| u.total), Some(42), "split at {at}");
        }
    }

    #[test]
    fn an_event_stream_keeps_the_last_usage() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"usage: {\"}}],\"usage\":null}\n\n",
            ": comment with data: {\"usage\":{\"total_tokens\":1000}}\n",
            "event: message\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\r\n\r\n",
            "data: [DONE]\n\n"
        );
        let bytes = stream.as_bytes();
        for at in 0..bytes.len() {
            let usage = scan(&[&bytes[..at], &bytes[at..]], false, true);
            assert_eq!(usage, Some(TokenUsage { prompt: 5, completion: 7, total: 12 }), "split at {at}");
        }
        assert_eq!(scan(&[b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"], false, true), None);
    }

    #[test]
    fn an_oversized_usage_is_dropped() {
        let padding = "x".repeat(USAGE_BYTES_MAX);
        let body = format!(r#"{{"usage":{{"prompt_tokens":1,"note":"{padding}"}}}}"#);
        assert_eq!(scan(&[body.as_bytes()], false, false), None);
    }
}
