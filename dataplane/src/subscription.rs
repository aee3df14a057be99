//! Subscription keys: where a request carries its key, and whether that key opens the API. Sans-IO.

use portcullis_contract::key_index::KEY_BYTES_MAX;
use portcullis_contract::model::{Config, SubscriptionScope, SubscriptionState, UserState};

use crate::http::request::RequestHead;
use crate::http::url::{self, Coding, Target};

/// A key as found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundKey<'a> {
    /// Neither the header nor the query parameter is present.
    Absent,
    /// The key bytes (percent-decoded when from the query).
    Present(&'a [u8]),
    /// A key longer than any valid key: it can only be invalid.
    TooLong,
}

/// Why a key does not open an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error("no subscription key in the request")]
    Missing,
    #[error("unknown subscription key, inactive subscription or owner, or a subscription for another API")]
    Invalid,
}

/// Finds the key: from header `header_name` (case-insensitive); only if that header is absent,
/// from the first query parameter named `query_name`, decoded as APIM reads query parameters
/// ([`Coding::Form`]: names and values percent-decoded, `+` is a space, malformed escapes kept)
/// into `scratch`.
pub fn find_key<'a>(
    head: &RequestHead,
    buf: &'a [u8],
    header_name: &str,
    query_name: &str,
    scratch: &'a mut [u8; KEY_BYTES_MAX],
) -> FoundKey<'a> {
    if let Some(value) = head.header(buf, header_name.as_bytes()) {
        return if value.len() > KEY_BYTES_MAX { FoundKey::TooLong } else { FoundKey::Present(value) };
    }
    let Some(query) = Target::parse(head.target(buf)).query() else {
        return FoundKey::Absent;
    };
    let found = url::query_pairs(query).find(|(name, _)| url::decodes_to(name, Coding::Form, query_name.as_bytes()));
    match found {
        None => FoundKey::Absent,
        Some((_, value)) => match url::percent_decode_into(value, Coding::Form, scratch) {
            Some(len) => FoundKey::Present(&scratch[..len]),
            None => FoundKey::TooLong,
        },
    }
}

/// Checks `key` against the config for API `api` (any revision); returns the subscription index. A key opens
/// the API when its subscription is active, scoped to it, and owned by nobody or by an active
/// user: APIM's blocked (and pending or deleted) accounts cannot call APIs, and their keys get
/// the invalid-key answer, the only built-in one for a key that exists but opens nothing.
pub fn check(config: &Config, api: u32, key: FoundKey<'_>) -> Result<u32, KeyRejection> {
    let key = match key {
        FoundKey::Absent => return Err(KeyRejection::Missing),
        FoundKey::TooLong => return Err(KeyRejection::Invalid),
        FoundKey::Present(key) => key,
    };
    let entry = config.key_index.lookup(key).ok_or(KeyRejection::Invalid)?;
    // Validated snapshots only hold in-range subscription indices; `get` keeps it panic-free anyway.
    let subscription = config.subscriptions.get(entry.subscription as usize).ok_or(KeyRejection::Invalid)?;
    let in_scope = match subscription.scope {
        SubscriptionScope::AllApis => true,
        // A subscription to an API covers all its revisions.
        SubscriptionScope::Api(scoped) => {
            scoped == config.apis.get(api as usize).and_then(|api| api.revision_of).unwrap_or(api)
        }
        SubscriptionScope::Product(product) => {
            config.products.get(product as usize).is_some_and(|product| product.apis.contains(&api))
        }
    };
    let owner_active = subscription
        .owner
        .is_none_or(|owner| config.users.get(owner as usize).is_some_and(|user| user.state == UserState::Active));
    if subscription.state != SubscriptionState::Active || !in_scope || !owner_active {
        return Err(KeyRejection::Invalid);
    }
    Ok(entry.subscription)
}

/// The product a request to `api` comes through: the product of its subscription, or, without a
/// subscription, the open product (one that requires none) that contains the API, as APIM
/// resolves keyless requests. Product-scope policies run only for requests through a product.
pub fn product_of(config: &Config, api: u32, subscription: Option<u32>) -> Option<u32> {
    match subscription.and_then(|index| config.subscriptions.get(index as usize)) {
        Some(subscription) => match subscription.scope {
            SubscriptionScope::Product(product) => Some(product),
            SubscriptionScope::Api(_) | SubscriptionScope::AllApis => None,
        },
        None => config
            .products
            .iter()
            .position(|product| !product.subscription_required && product.apis.contains(&api))
            .map(|index| index as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request;
    use portcullis_contract::key_index::{KeyEntry, KeyIndex, KeySlot};
    use portcullis_contract::model::{Api, Product, Subscription, User};

    const HEADER: &str = "Ocp-Apim-Subscription-Key";
    const QUERY: &str = "subscription-key";

    fn found(raw: &[u8]) -> Result<Vec<u8>, FoundKey<'static>> {
        let line_end = raw.windows(2).position(|pair| pair == b"\r\n").unwrap() + 2;
        let raw = &[&raw[..line_end], b"Host: a\r\n", &raw[line_end..]].concat();
        let head = request::parse(raw).unwrap().unwrap();
        let mut scratch = [0; KEY_BYTES_MAX];
        match find_key(&head, raw, HEADER, QUERY, &mut scratch) {
            FoundKey::Present(key) => Ok(key.to_vec()),
            FoundKey::Absent => Err(FoundKey::Absent),
            FoundKey::TooLong => Err(FoundKey::TooLong),
        }
    }

    #[test]
    fn header_then_query() {
        assert_eq!(found(b"GET /a HTTP/1.1\r\nocp-apim-subscription-key: k1\r\n\r\n").unwrap(), b"k1");
        assert_eq!(found(b"GET /a?x=1&subscription-key=k2 HTTP/1.1\r\n\r\n").unwrap(), b"k2");
        // The header wins, even over a query parameter that is present.
        let both = b"GET /a?subscription-key=q HTTP/1.1\r\nOcp-Apim-Subscription-Key: h\r\n\r\n";
        assert_eq!(found(both).unwrap(), b"h");
        // An empty header is present: the query is not consulted.
        let empty = b"GET /a?subscription-key=q HTTP/1.1\r\nOcp-Apim-Subscription-Key:\r\n\r\n";
        assert_eq!(found(empty).unwrap(), b"");
        assert_eq!(found(b"GET /a?subscription-keyx=1 HTTP/1.1\r\n\r\n"), Err(FoundKey::Absent));
        assert_eq!(found(b"GET /a HTTP/1.1\r\n\r\n"), Err(FoundKey::Absent));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(found(b"GET /a?subscription-key=a%2Bb%3d%zz%4 HTTP/1.1\r\n\r\n").unwrap(), b"a+b=%zz%4");
        // As APIM reads query parameters: `+` is a space (it was kept as `+` before the URL module).
        assert_eq!(found(b"GET /a?subscription-key=a+b HTTP/1.1\r\n\r\n").unwrap(), b"a b");
        // Malformed escapes are kept literally, as before; the `+` after the `%` is a space.
        assert_eq!(found(b"GET /a?subscription-key=%+F%G1%-1%1 HTTP/1.1\r\n\r\n").unwrap(), b"% F%G1%-1%1");
        assert_eq!(found(b"GET /a?subscription-key=k% HTTP/1.1\r\n\r\n").unwrap(), b"k%");
        // The parameter's name is decoded too, and the first parameter of that name wins.
        assert_eq!(found(b"GET /a?subscription%2Dkey=k1&subscription-key=k2 HTTP/1.1\r\n\r\n").unwrap(), b"k1");
        // A `?` in the fragment starts no query.
        assert_eq!(found(b"GET /a#?subscription-key=k HTTP/1.1\r\n\r\n"), Err(FoundKey::Absent));
        assert_eq!(found(b"GET /a?x=1#&subscription-key=k HTTP/1.1\r\n\r\n"), Err(FoundKey::Absent));
        let long = format!("GET /a?subscription-key={} HTTP/1.1\r\n\r\n", "%41".repeat(KEY_BYTES_MAX + 1));
        assert_eq!(found(long.as_bytes()), Err(FoundKey::TooLong));
        let exact = format!("GET /a?subscription-key={} HTTP/1.1\r\n\r\n", "%41".repeat(KEY_BYTES_MAX));
        assert_eq!(found(exact.as_bytes()).unwrap().len(), KEY_BYTES_MAX);
        let long_header = format!("GET /a HTTP/1.1\r\n{HEADER}: {}\r\n\r\n", "a".repeat(KEY_BYTES_MAX + 1));
        assert_eq!(found(long_header.as_bytes()), Err(FoundKey::TooLong));
    }

    fn config() -> Config {
        let subscription = |id: &str, scope, state| Subscription::new(id, id, scope, state);
        let owned = |id: &str, owner| Subscription {
            owner: Some(owner),
            ..subscription(id, SubscriptionScope::AllApis, SubscriptionState::Active)
        };
        let subscriptions = vec![
            subscription("all", SubscriptionScope::AllApis, SubscriptionState::Active),
            subscription("api1", SubscriptionScope::Api(1), SubscriptionState::Active),
            subscription("off", SubscriptionScope::AllApis, SubscriptionState::Suspended),
            subscription("gold", SubscriptionScope::Product(0), SubscriptionState::Active),
            owned("alice", 0),
            owned("bob", 1),
            owned("carol", 2),
            owned("dave", 3),
        ];
        let user = |id: &str, state| User {
            id: id.into(),
            email: format!("{id}@example.test"),
            first_name: id.into(),
            last_name: id.into(),
            note: None,
            registration_unix_ms: None,
            state,
            groups: Vec::new(),
        };
        let users = vec![
            user("alice", UserState::Active),
            user("bob", UserState::Blocked),
            user("carol", UserState::Pending),
            user("dave", UserState::Deleted),
        ];
        let entries = ["all", "api1", "off", "gold", "alice", "bob", "carol", "dave"]
            .iter()
            .enumerate()
            .map(|(i, key)| KeyEntry { key: (*key).into(), subscription: i as u32, slot: KeySlot::Primary })
            .collect();
        Config {
            subscriptions,
            users,
            key_index: KeyIndex::build([1, 2], entries).unwrap(),
            products: vec![
                Product {
                    id: "gold".into(),
                    name: "Gold".into(),
                    apis: vec![2],
                    subscription_required: true,
                    published: true,
                    approval_required: false,
                    subscriptions_limit: None,
                    groups: Vec::new(),
                },
                Product {
                    id: "free".into(),
                    name: "Free".into(),
                    apis: vec![3],
                    subscription_required: false,
                    published: true,
                    approval_required: false,
                    subscriptions_limit: None,
                    groups: Vec::new(),
                },
            ],
            ..Config::empty("t")
        }
    }

    #[test]
    fn products_open_their_apis_and_carry_keyless_requests() {
        let config = config();
        assert_eq!(check(&config, 2, FoundKey::Present(b"gold")), Ok(3));
        assert_eq!(check(&config, 1, FoundKey::Present(b"gold")), Err(KeyRejection::Invalid));
        assert_eq!(product_of(&config, 2, Some(3)), Some(0));
        assert_eq!(product_of(&config, 0, Some(0)), None, "an all-APIs subscription is not through a product");
        assert_eq!(product_of(&config, 3, None), Some(1), "keyless requests come through the open product");
        assert_eq!(product_of(&config, 2, None), None, "a product that requires a key is not open");
    }

    #[test]
    fn a_subscription_to_an_api_opens_all_its_revisions() {
        let api = crate::policy::sample::api();
        let revision = Api { revision: "2".into(), revision_of: Some(1), ..api.clone() };
        let config = Config { apis: vec![api.clone(), api, revision], ..config() };
        assert_eq!(check(&config, 2, FoundKey::Present(b"api1")), Ok(1), "revision 2 of API 1");
        assert_eq!(check(&config, 1, FoundKey::Present(b"api1")), Ok(1));
        assert_eq!(check(&config, 0, FoundKey::Present(b"api1")), Err(KeyRejection::Invalid));
    }

    #[test]
    fn checks_state_and_scope() {
        let config = config();
        assert_eq!(check(&config, 0, FoundKey::Present(b"all")), Ok(0));
        assert_eq!(check(&config, 1, FoundKey::Present(b"api1")), Ok(1));
        assert_eq!(check(&config, 0, FoundKey::Present(b"api1")), Err(KeyRejection::Invalid));
        assert_eq!(check(&config, 0, FoundKey::Present(b"off")), Err(KeyRejection::Invalid));
        assert_eq!(check(&config, 0, FoundKey::Present(b"nope")), Err(KeyRejection::Invalid));
        assert_eq!(check(&config, 0, FoundKey::Present(b"")), Err(KeyRejection::Invalid));
        assert_eq!(check(&config, 0, FoundKey::TooLong), Err(KeyRejection::Invalid));
        assert_eq!(check(&config, 0, FoundKey::Absent), Err(KeyRejection::Missing));
    }

    #[test]
    fn only_an_active_owner_s_keys_open_anything() {
        let config = config();
        assert_eq!(check(&config, 0, FoundKey::Present(b"alice")), Ok(4));
        for key in [&b"bob"[..], b"carol", b"dave"] {
            assert_eq!(check(&config, 0, FoundKey::Present(key)), Err(KeyRejection::Invalid), "{key:?}");
        }
    }
}
