//! Which certificate serves a TLS server name (SNI): exact names first, then one-label
//! wildcards, else the first certificate. Sans-IO: names in, index out.

use ahash::AHashMap;

/// A DNS name is at most 253 characters (RFC 1035); longer SNI values match nothing.
pub(crate) const DNS_NAME_BYTES_MAX: usize = 253;

/// Lower-case DNS names → index of the certificate that serves them.
#[derive(Debug, Default)]
pub(crate) struct NameTable {
    exact: AHashMap<String, usize>,
    /// `*.example.com` is stored as `example.com`.
    wildcard: AHashMap<String, usize>,
}

impl NameTable {
    /// Indexes each certificate's names; when two certificates name the same host, the earlier
    /// one serves it (file order, as configured).
    pub(crate) fn new<'a>(names_per_certificate: impl Iterator<Item = &'a [String]>) -> Self {
        let mut table = Self::default();
        for (index, names) in names_per_certificate.enumerate() {
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.entry(parent.to_owned()).or_insert(index),
                    None => table.exact.entry(name).or_insert(index),
                };
            }
        }
        table
    }

    /// The certificate for `server_name`, or `None` (then the default, the first, serves).
    pub(crate) fn find(&self, server_name: &str) -> Option<usize> {
        if server_name.len() > DNS_NAME_BYTES_MAX {
            return None;
        }
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&index) = self.exact.get(&name) {
            return Some(index);
        }
        // A wildcard stands for exactly one label: a.example.com, not a.b.example.com.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> NameTable {
        let first = vec!["api.example.com".to_owned(), "*.svc.example.com".to_owned()];
        let second = vec!["Admin.Example.com".to_owned(), "api.example.com".to_owned()];
        NameTable::new([first.as_slice(), second.as_slice()].into_iter())
    }

    #[test]
    fn exact_names_case_insensitively_first_certificate_wins() {
        let table = table();
        assert_eq!(table.find("api.example.com"), Some(0));
        assert_eq!(table.find("API.example.COM"), Some(0));
        assert_eq!(table.find("admin.example.com"), Some(1));
        assert_eq!(table.find("admin.example.com."), Some(1));
    }

    #[test]
    fn wildcards_cover_one_label() {
        let table = table();
        assert_eq!(table.find("orders.svc.example.com"), Some(0));
        assert_eq!(table.find("a.b.svc.example.com"), None);
        assert_eq!(table.find("svc.example.com"), None);
    }

    #[test]
    fn unknown_and_oversized_names_match_nothing() {
        let table = table();
        assert_eq!(table.find("other.example.org"), None);
        assert_eq!(table.find(""), None);
        assert_eq!(table.find(&"a".repeat(DNS_NAME_BYTES_MAX + 1)), None);
    }
}
