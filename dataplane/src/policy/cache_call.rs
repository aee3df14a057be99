//! What the caching policies ask of the proxy. The VM is sans-IO: `cache-lookup` and the value
//! policies suspend it with an [`Exit::Cache`](crate::policy::Exit::Cache) carrying one of these;
//! the proxy talks to the cache (in process, or Redis on its side thread), records the result
//! and resumes the section. `cache-store` only marks the response ([`StoreMark`]).

use std::sync::Arc;

use portcullis_contract::program::CachingType;

use crate::policy::load::LitRef;
use crate::policy::value::{Text, Value};

/// One request of a caching policy to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCall {
    /// `cache-lookup`: look the response up; a hit answers the request.
    LookupResponse(ResponseLookup),
    /// `cache-lookup-value`: on a hit set `variable` to the value; on a miss to `default`, if any.
    LookupValue { caching: CachingType, key: String, variable: LitRef, default: Option<CachedValue> },
    /// `cache-store-value`.
    StoreValue { caching: CachingType, key: String, value: CachedValue, duration_s: u64 },
    /// `cache-remove-value`.
    RemoveValue { caching: CachingType, key: String },
}

/// `cache-lookup`'s settings as one request evaluated them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLookup {
    pub caching: CachingType,
    pub vary_by_developer: bool,
    pub vary_by_developer_groups: bool,
    pub downstream: DownstreamCaching,
    pub must_revalidate: bool,
    pub allow_private: bool,
    /// The program holding the vary-by names (string constants).
    pub program: u32,
    pub headers_first: u32,
    pub headers: u16,
    pub queries_first: u32,
    pub queries: u16,
}

/// `downstream-caching-type`: what the gateway lets caches after it do with a cached response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamCaching {
    None,
    Private,
    Public,
}

impl DownstreamCaching {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "none" => Some(Self::None),
            "private" => Some(Self::Private),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

/// `cache-store` ran in the outbound section: store the response for this long, if it is one
/// the rules let in (docs/cache.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMark {
    pub duration_s: u64,
    /// `cache-response`: `Some(true)` stores any status; absent or false, only 200.
    pub any_status: bool,
}

/// A value kept by `cache-store-value`: what crosses threads (and goes to Redis) of a C# value.
/// Collections and JSON are kept as their text, as APIM serializes what it caches.
#[derive(Debug, Clone, PartialEq)]
pub enum CachedValue {
    Text(Arc<str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

// Doubles compare by value; a NaN never equals itself, which is all `Exit`'s `Eq` needs.
impl Eq for CachedValue {}

impl CachedValue {
    /// Keeps `value` (null has no cached form: the caller refuses it).
    pub fn of(value: &Value<'_>) -> Self {
        match value {
            Value::Str(text) => CachedValue::Text(Arc::from(text.as_str())),
            Value::Int(number) => CachedValue::Int(*number),
            Value::Double(number) => CachedValue::Double(*number),
            Value::Bool(flag) => CachedValue::Bool(*flag),
            other => {
                let mut text = String::new();
                other.write_display(&mut text);
                CachedValue::Text(Arc::from(text))
            }
        }
    }

    /// The value for the VM.
    pub fn to_value(&self) -> Value<'static> {
        match self {
            CachedValue::Text(text) => Value::Str(Text::Shared(std::rc::Rc::from(&**text))),
            CachedValue::Int(number) => Value::Int(*number),
            CachedValue::Double(number) => Value::Double(*number),
            CachedValue::Bool(flag) => Value::Bool(*flag),
        }
    }

    /// Bytes this value takes in a cache (for the byte bound).
    pub fn weight(&self) -> usize {
        match self {
            CachedValue::Text(text) => text.len() + 16,
            _ => 16,
        }
    }

    /// The wire form for the external cache: a one-byte type tag, then the value.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            CachedValue::Text(text) => (b's', text.as_bytes().to_vec()),
            CachedValue::Int(number) => (b'i', number.to_string().into_bytes()),
            CachedValue::Double(number) => (b'd', number.to_bits().to_string().into_bytes()),
            CachedValue::Bool(flag) => (b'b', vec![u8::from(*flag)]),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(tag);
        out.extend_from_slice(&body);
        out
    }

    /// Reads [`Self::encode`]'s form; anything else (another writer's key) is `None`, a miss.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, body) = bytes.split_first()?;
        let text = || std::str::from_utf8(body).ok();
        Some(match tag {
            b's' => CachedValue::Text(Arc::from(text()?)),
            b'i' => CachedValue::Int(text()?.parse().ok()?),
            b'd' => CachedValue::Double(f64::from_bits(text()?.parse().ok()?)),
            b'b' => CachedValue::Bool(*body.first()? != 0),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_wire_form() {
        for value in [
            CachedValue::Text(Arc::from("profile ü")),
            CachedValue::Int(-42),
            CachedValue::Double(2.5),
            CachedValue::Bool(true),
        ] {
            assert_eq!(CachedValue::decode(&value.encode()), Some(value));
        }
        assert_eq!(CachedValue::decode(b""), None);
        assert_eq!(CachedValue::decode(b"xjunk"), None);
        assert_eq!(CachedValue::decode(b"inot-a-number"), None);
    }

    #[test]
    fn downstream_types_parse() {
        assert_eq!(DownstreamCaching::parse("public"), Some(DownstreamCaching::Public));
        assert_eq!(DownstreamCaching::parse(" private "), Some(DownstreamCaching::Private));
        assert_eq!(DownstreamCaching::parse("none"), Some(DownstreamCaching::None));
        assert_eq!(DownstreamCaching::parse("shared"), None);
    }
}
