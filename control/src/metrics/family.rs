//! A metric family's series: label sets to values, capped at `[metrics] series-max` label sets;
//! past the cap, new label sets are counted under one set whose every value is `other`.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// One series' labels, names and values, in the order they are written.
pub(crate) type Labels = Vec<(Cow<'static, str>, String)>;

/// The label value the series past the cap are counted under.
pub const OVERFLOW_LABEL_VALUE: &str = "other";

/// The series of one family.
#[derive(Debug, Clone)]
pub(crate) struct Family<V> {
    series: BTreeMap<Labels, V>,
    /// Observations counted under the `other` label set because the family was full.
    overflowed: u64,
}

impl<V> Default for Family<V> {
    fn default() -> Self {
        Self { series: BTreeMap::new(), overflowed: 0 }
    }
}

impl<V: Default> Family<V> {
    /// The value of the series `labels`; a new label set when the family already holds
    /// `series_max` of them is replaced by the overflow set (which is always admitted, so a
    /// family holds at most `series_max + 1` series).
    pub(crate) fn series(&mut self, labels: Labels, series_max: usize) -> &mut V {
        let labels = if self.series.len() >= series_max && !self.series.contains_key(&labels) {
            self.overflowed += 1;
            overflow(labels)
        } else {
            labels
        };
        self.series.entry(labels).or_default()
    }
}

impl<V> Family<V> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Labels, &V)> {
        self.series.iter()
    }

    /// Observations counted under the overflow set so far.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

/// The same label names, every value `other`.
fn overflow(labels: Labels) -> Labels {
    labels.into_iter().map(|(name, _)| (name, OVERFLOW_LABEL_VALUE.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(api: &str) -> Labels {
        vec![(Cow::Borrowed("api"), api.to_owned())]
    }

    #[test]
    fn new_label_sets_past_the_cap_go_to_other() {
        let mut family = Family::<u64>::default();
        for api in ["a", "b", "c", "d", "a"] {
            *family.series(labels(api), 2) += 1;
        }
        let series: Vec<(String, u64)> = family.iter().map(|(labels, n)| (labels[0].1.clone(), *n)).collect();
        assert_eq!(series, [("a".to_owned(), 2), ("b".to_owned(), 1), ("other".to_owned(), 2)]);
        assert_eq!(family.overflowed(), 2);
    }
}
