//! DotLiquid's lookups: a missing member or index is nil, not an error (the `liquid` crate is
//! strict). [`Lenient`] mirrors a Liquid value and answers a missing key with nil.

use std::fmt;

use liquid::model::{ArrayView, DisplayCow, KStringCow, ObjectView, ScalarCow, State, Value as LiquidValue, ValueView};

/// Nil, for lookups that find nothing.
static NIL: Lenient = Lenient { plain: LiquidValue::Nil, children: Children::Missing, display: None };

/// A Liquid value whose objects and arrays answer missing members with nil.
#[derive(Debug)]
pub(crate) struct Lenient {
    /// The value itself (rendering, comparisons, `assign` copies).
    plain: LiquidValue,
    children: Children,
    /// What an object with a `ToString` member (`context.Request.Url`) is as a value (printed,
    /// filtered, assigned): its text, as DotLiquid prints a .NET object by its `ToString()`. Its
    /// members are still read through the lookups (`context.Request.Url.Path`).
    display: Option<LiquidValue>,
}

#[derive(Debug)]
enum Children {
    Leaf,
    /// What a lookup that found nothing returns: nil, whose own members are nil again.
    Missing,
    Array(Vec<Lenient>),
    Object(Vec<(String, Lenient)>),
}

impl Lenient {
    pub(crate) fn new(plain: LiquidValue) -> Self {
        let children = match &plain {
            LiquidValue::Array(items) => Children::Array(items.iter().cloned().map(Lenient::new).collect()),
            LiquidValue::Object(object) => Children::Object(
                object.iter().map(|(key, value)| (key.to_string(), Lenient::new(value.clone()))).collect(),
            ),
            _ => Children::Leaf,
        };
        let display = match &plain {
            LiquidValue::Object(object) => object.get("ToString").filter(|v| v.is_scalar()).cloned(),
            _ => None,
        };
        Self { plain, children, display }
    }

    fn member(&self, key: &str) -> Option<&Lenient> {
        match &self.children {
            Children::Object(members) => members.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }
}

impl ValueView for Lenient {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }
    fn render(&self) -> DisplayCow<'_> {
        match &self.display {
            Some(text) => text.render(),
            None => self.plain.render(),
        }
    }
    fn source(&self) -> DisplayCow<'_> {
        self.plain.source()
    }
    fn type_name(&self) -> &'static str {
        self.plain.type_name()
    }
    fn query_state(&self, state: State) -> bool {
        self.plain.query_state(state)
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        self.plain.to_kstr()
    }
    fn to_value(&self) -> LiquidValue {
        self.display.clone().unwrap_or_else(|| self.plain.clone())
    }
    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        self.plain.as_scalar()
    }
    fn as_array(&self) -> Option<&dyn ArrayView> {
        match self.children {
            Children::Array(_) => Some(self),
            _ => None,
        }
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        match self.children {
            Children::Object(_) | Children::Missing => Some(self),
            _ => None,
        }
    }
    fn as_state(&self) -> Option<State> {
        self.plain.as_state()
    }
    fn is_nil(&self) -> bool {
        self.plain.is_nil()
    }
}

impl ObjectView for Lenient {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        match &self.children {
            Children::Object(members) => members.len() as i64,
            _ => 0,
        }
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match &self.children {
            Children::Object(members) => Box::new(members.iter().map(|(name, _)| KStringCow::from_ref(name))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.children {
            Children::Object(members) => Box::new(members.iter().map(|(_, value)| value as &dyn ValueView)),
            Children::Array(items) => Box::new(items.iter().map(|value| value as &dyn ValueView)),
            Children::Leaf | Children::Missing => Box::new(std::iter::empty()),
        }
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match &self.children {
            Children::Object(members) => {
                Box::new(members.iter().map(|(name, value)| (KStringCow::from_ref(name), value as &dyn ValueView)))
            }
            _ => Box::new(std::iter::empty()),
        }
    }
    fn contains_key(&self, index: &str) -> bool {
        self.member(index).is_some()
    }
    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        match self.member(index) {
            Some(value) => Some(value),
            // `size` falls through to Liquid's own member.
            None if index == "size" => None,
            None => Some(&NIL),
        }
    }
}

impl ArrayView for Lenient {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        match &self.children {
            Children::Array(items) => items.len() as i64,
            _ => 0,
        }
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        ObjectView::values(self)
    }
    fn contains_key(&self, index: i64) -> bool {
        self.item(index).is_some()
    }
    fn get(&self, index: i64) -> Option<&dyn ValueView> {
        Some(self.item(index).unwrap_or(&NIL))
    }
}

impl Lenient {
    /// Item `index` of an array; negative indices count from the end, as Liquid's do.
    fn item(&self, index: i64) -> Option<&Lenient> {
        let Children::Array(items) = &self.children else { return None };
        let at = if index < 0 { (items.len() as i64).checked_add(index)? } else { index };
        items.as_slice().get(usize::try_from(at).ok()?)
    }
}
