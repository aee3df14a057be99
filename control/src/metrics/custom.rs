//! `emit-metric` values as Prometheus families of their own: the name from the namespace and the
//! name, sanitised; the dimensions as labels; a counter of the summed values and one of the
//! emissions.

use std::borrow::Cow;
use std::collections::BTreeMap;

use portcullis_contract::telemetry::CustomMetric;

use super::family::{Family, Labels};

/// Custom families at most: they come from the policies (a few dozen in practice); more are
/// dropped and counted.
pub(crate) const CUSTOM_FAMILIES_MAX: usize = 1_000;
/// A custom name that would land among Portcullis' own families gets this in front.
const RESERVED_PREFIX: &str = "portcullis_";
const COLLISION_PREFIX: &str = "custom_";

/// One custom family's series.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CustomValue {
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

/// Every custom family, by metric name.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomFamilies {
    families: BTreeMap<String, Family<CustomValue>>,
    /// Emissions dropped: their family was past [`CUSTOM_FAMILIES_MAX`] or had no usable name.
    dropped: u64,
}

impl CustomFamilies {
    pub(crate) fn record(&mut self, metric: &CustomMetric, series_max: usize) {
        let Some(name) = metric_name(&metric.namespace, &metric.name) else {
            self.dropped += metric.count;
            return;
        };
        if self.families.len() >= CUSTOM_FAMILIES_MAX && !self.families.contains_key(&name) {
            self.dropped += metric.count;
            return;
        }
        let mut labels: Labels = Vec::with_capacity(metric.dimensions.len());
        for (dimension, value) in &metric.dimensions {
            match label_name(dimension) {
                Some(label) if !labels.iter().any(|(seen, _)| *seen == label) => {
                    labels.push((Cow::Owned(label), value.clone()));
                }
                _ => {}
            }
        }
        labels.sort();
        let series = self.families.entry(name).or_default().series(labels, series_max);
        series.sum += metric.sum;
        series.count += metric.count;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Family<CustomValue>)> {
        self.families.iter()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// `<namespace>_<name>` in Prometheus' alphabet: lower case, `_` for every run of other
/// characters, no leading digit; names of Portcullis' own prefix get `custom_` in front.
/// `None` when nothing usable is left.
pub fn metric_name(namespace: &str, name: &str) -> Option<String> {
    let name = snake_case(&format!("{namespace} {name}"));
    if name.is_empty() {
        return None;
    }
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) { format!("_{name}") } else { name };
    Some(if name.starts_with(RESERVED_PREFIX) { format!("{COLLISION_PREFIX}{name}") } else { name })
}

/// A dimension's name as a label name (as [`metric_name`]; leading `_`s go, so no label is one
/// of Prometheus' own `__` names).
pub fn label_name(dimension: &str) -> Option<String> {
    let name = snake_case(dimension);
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) { format!("_{name}") } else { name };
    (!name.is_empty()).then_some(name)
}

/// Lower-case ASCII letters and digits, one `_` for each run of anything else, none at the ends.
fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(metric_name("API Management", "Request").as_deref(), Some("api_management_request"));
        assert_eq!(metric_name("", "9 lives!").as_deref(), Some("_9_lives"));
        assert_eq!(metric_name("portcullis", "requests").as_deref(), Some("custom_portcullis_requests"));
        assert_eq!(metric_name("", "%%"), None);
        assert_eq!(label_name("Client IP").as_deref(), Some("client_ip"));
        assert_eq!(label_name("__name__").as_deref(), Some("name"));
        assert_eq!(label_name("***"), None);
    }
}
