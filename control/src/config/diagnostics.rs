//! Every problem of one config load, rendered one after another with a count at the end.

use std::fmt;

use portcullis_policy::diagnostic::Diagnostic;

/// Every problem found in one load: a load reports all of them, not just the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// The problems, in the order they were found (files in name order).
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Adds one problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.items {
            writeln!(f, "{diagnostic}")?;
            writeln!(f)?;
        }
        let plural = if self.items.len() == 1 { "" } else { "s" };
        write!(f, "{} error{plural}: the config was not loaded", self.items.len())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_load_counts_its_problems_after_listing_them() {
        let mut all = Diagnostics::default();
        all.push(Diagnostic::at_path(Path::new("/cfg/x.txt"), "stray file"));
        assert!(all.to_string().ends_with("1 error: the config was not loaded"));
        assert_eq!(all.to_string(), "error: stray file\n  --> /cfg/x.txt\n\n1 error: the config was not loaded");
    }
}
