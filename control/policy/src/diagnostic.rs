//! Diagnostics: one message with its file, line and column, rendered with a caret excerpt. The
//! compiler reports its problems this way, and so does the config loader that calls it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config file's text, kept so that errors can point into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where the text was read from.
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

/// Line and column (both 1-based, columns in characters) of a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

/// The line a diagnostic points at and which of its characters to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Excerpt {
    text: String,
    /// Characters to underline, starting at `Location::column`.
    width: usize,
}

/// One problem found in a policy document or a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in words that say what to do.
    pub message: String,
    /// The file (or directory) it is about.
    pub file: PathBuf,
    /// Where in the file, when the problem is inside its text.
    pub location: Option<Location>,
    excerpt: Option<Excerpt>,
}

impl SourceFile {
    /// Wraps a file's text.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self { path: path.into(), text: text.into() }
    }

    /// A diagnostic pointing at the bytes `span` of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let end = floor_char_boundary(&self.text, span.end.clamp(start, self.text.len()));
        let line_start = self.text[..start].rfind('\n').map_or(0, |at| at + 1);
        let line_end = self.text[start..].find('\n').map_or(self.text.len(), |at| start + at);
        let line = self.text[..start].matches('\n').count() + 1;
        // A byte-order mark is no column (editors do not show it).
        let column = self.text[line_start..start].chars().filter(|c| *c != '\u{feff}').count() + 1;
        let underlined = self.text[start..end.min(line_end)].chars().count();
        let text = self.text[line_start..line_end].trim_end_matches('\r').replace('\t', " ").replace('\u{feff}', "");
        Diagnostic {
            message: message.into(),
            file: self.path.clone(),
            location: Some(Location { line, column }),
            excerpt: Some(Excerpt { text, width: underlined.max(1) }),
        }
    }

    /// A diagnostic about the file as a whole (points at its first character).
    pub fn error_at_start(&self, message: impl Into<String>) -> Diagnostic {
        self.error(0..0, message)
    }
}

impl Diagnostic {
    /// A diagnostic about a path that has no text to point into (a directory, a stray file).
    pub fn at_path(path: &Path, message: impl Into<String>) -> Self {
        Self { message: message.into(), file: path.to_path_buf(), location: None, excerpt: None }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let (Some(location), Some(excerpt)) = (self.location, &self.excerpt) else {
            return write!(f, "  --> {}", self.file.display());
        };
        let width = location.line.to_string().len();
        let pad = " ".repeat(width + 1);
        writeln!(f, "{pad}--> {}:{}:{}", self.file.display(), location.line, location.column)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, " {:>width$} | {}", location.line, excerpt.text)?;
        write!(f, "{pad} | {}{}", " ".repeat(location.column - 1), "^".repeat(excerpt.width))
    }
}

/// The largest char boundary at or below `at` (str::floor_char_boundary is not stable yet).
fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_caret_under_the_span() {
        let source = SourceFile::new("/cfg/subscriptions/demo.toml", "name = \"Demo\"\n\nscope = \"/apis/ech\"\n");
        let start = source.text.find("\"/apis").unwrap();
        let diagnostic = source.error(start..start + 11, "unknown API \"ech\" in subscription scope");
        assert_eq!(diagnostic.location, Some(Location { line: 3, column: 9 }));
        let expected = "error: unknown API \"ech\" in subscription scope\n  --> /cfg/subscriptions/demo.toml:3:9\n   |\n 3 | scope = \"/apis/ech\"\n   |         ^^^^^^^^^^^";
        assert_eq!(diagnostic.to_string(), expected);
    }

    #[test]
    fn wide_line_numbers_widen_the_gutter_and_spans_stop_at_the_line_end() {
        let text = format!("{}key = \"é\"\nnext = 1\n", "\n".repeat(11));
        let source = SourceFile::new("f.toml", text);
        let start = source.text.find("\"é").unwrap();
        let diagnostic = source.error(start..source.text.len(), "bad");
        assert_eq!(diagnostic.location, Some(Location { line: 12, column: 7 }));
        assert!(diagnostic.to_string().ends_with("\n    |\n 12 | key = \"é\"\n    |       ^^^"), "{diagnostic}");
    }

    #[test]
    fn a_byte_order_mark_is_no_column() {
        let source = SourceFile::new("p.xml", "\u{feff}<policies><nope/></policies>\n<x/>");
        let start = source.text.find("nope").unwrap();
        let diagnostic = source.error(start..start + 4, "unknown");
        assert_eq!(diagnostic.location, Some(Location { line: 1, column: 12 }));
        assert!(
            diagnostic.to_string().ends_with(" 1 | <policies><nope/></policies>\n   |            ^^^^"),
            "{diagnostic}"
        );
    }

    #[test]
    fn path_only_and_out_of_range_spans() {
        let diagnostic = Diagnostic::at_path(Path::new("/cfg/x.txt"), "stray file");
        assert_eq!(diagnostic.to_string(), "error: stray file\n  --> /cfg/x.txt");
        let source = SourceFile::new("f.toml", "a = 1");
        assert_eq!(source.error(99..120, "eof").location, Some(Location { line: 1, column: 6 }));
    }
}
