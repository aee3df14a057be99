//! The config directory through the store and back: the same compile, the same files.

use std::path::{Path, PathBuf};

use portcullis_management::service::{AcceptAll, Authority, Service};
use portcullis_management::store::{Actor, Origin, SqliteStore, Write};
use serde_json::json;

use super::*;
use crate::config::{NamedValues, compile_state, load_declared, load_seeded};

/// A directory with one of everything the directory and the store both hold.
const FILES: &[(&str, &str)] = &[
    (
        "policy.xml",
        "<policies><inbound><set-header name=\"x-global\" exists-action=\"override\"><value>1</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>",
    ),
    (
        "named-values.toml",
        "[[named-value]]\nname = \"greeting\"\nvalue = \"hello\"\n[[named-value]]\nname = \"token\"\nvalue = \"s3cret\"\nsecret = true\n",
    ),
    (
        "fragments/stamp.xml",
        "<fragment><set-header name=\"x-stamp\" exists-action=\"override\"><value>{{greeting}}</value></set-header></fragment>",
    ),
    (
        "apis/echo/api.toml",
        "name = \"Echo\"\npath = \"echo\"\nbackend-url = \"http://127.0.0.1:9000/api\"\n[subscription-key]\nheader = \"x-key\"\n",
    ),
    (
        "apis/echo/policy.xml",
        "<policies><inbound><base /><include-fragment fragment-id=\"stamp\" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
    ),
    (
        "apis/echo/operations/get-user.toml",
        "name = \"Get user\"\nmethod = \"GET\"\nurl-template = \"/users/{id}\"\n[[response]]\nstatus = 200\ncontent-type = \"application/json\"\nexample = \"{}\"\n",
    ),
    (
        "apis/echo/operations/get-user.xml",
        "<policies><inbound><base /><mock-response status-code=\"200\" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
    ),
    ("version-sets/books.toml", "name = \"Books\"\nscheme = \"query\"\nquery-name = \"v\"\n"),
    (
        "apis/books/api.toml",
        "name = \"Books\"\npath = \"books\"\nbackend-url = \"http://127.0.0.1:9003\"\nversion-set = \"books\"\n",
    ),
    (
        "apis/books-v2/api.toml",
        "name = \"Books\"\npath = \"books\"\nbackend-url = \"http://127.0.0.1:9004\"\nversion-set = \"books\"\nversion = \"v2\"\nrevision = \"3\"\n",
    ),
    (
        "apis/books-v2;rev=1/api.toml",
        "backend-url = \"http://127.0.0.1:9005\"\nonline = false\nrevision-description = \"the old one\"\n",
    ),
    ("apis/pool/api.toml", "name = \"Pool\"\npath = \"pool\"\nbackend-id = \"two\"\nsubscription-required = false\n"),
    (
        "backends/two.toml",
        "load-balancing = \"weighted\"\n[[endpoint]]\naddress = \"127.0.0.1:9001\"\nweight = 3\n[[endpoint]]\naddress = \"127.0.0.1:9002\"\n",
    ),
    (
        "products/starter/product.toml",
        "name = \"Starter\"\napis = [\"echo\"]\ndescription = \"For trying things\"\napproval-required = true\nsubscriptions-limit = 2\ngroups = [\"partners\"]\n",
    ),
    ("groups/partners.toml", "name = \"Partners\"\ndescription = \"Our partners\"\n"),
    (
        "users/ada.toml",
        "email = \"ada@example.com\"\nfirst-name = \"Ada\"\nlast-name = \"Lovelace\"\ngroups = [\"partners\"]\nnote = \"first\"\n",
    ),
    (
        "products/starter/policy.xml",
        "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
    ),
    (
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/products/starter\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    ),
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-resources-{name}-{}-{next}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn actor() -> Actor {
    Actor { name: "test".into(), action: "test".into() }
}

fn store_of(declared: &[Declared]) -> Service {
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    let writes = declared
        .iter()
        .map(|d| Write::Put {
            path: d.path.clone(),
            properties: d.properties.clone(),
            origin: Origin::Config { file: d.file.clone() },
        })
        .collect();
    service.write(writes, &[], Authority::ConfigDirectory, &actor()).unwrap();
    service
}

fn directory() -> TempDir {
    let dir = TempDir::new("source");
    for (file, text) in FILES {
        dir.write(file, text);
    }
    dir
}

#[test]
fn the_store_compiles_to_what_the_directory_compiles_to() {
    let dir = directory();
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    let service = store_of(&declared);
    let from_store =
        compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut Default::default()).unwrap();
    let from_files = load_seeded(&dir.0, &NamedValues::default(), [1, 2]).unwrap();
    assert_eq!(from_store.apis, from_files.apis);
    assert_eq!(from_store.subscriptions, from_files.subscriptions);
    assert_eq!(from_store.products, from_files.products);
    // Sites name where each policy came from: the resource, or the file.
    let without_locations = |programs: &[portcullis_contract::program::Program]| {
        let mut programs = programs.to_vec();
        programs.iter_mut().flat_map(|p| p.sites.iter_mut()).for_each(|site| site.location.clear());
        programs
    };
    assert_eq!(without_locations(&from_store.programs), without_locations(&from_files.programs));
    assert_eq!(from_store.programs[1].sites[0].location, "/policies/policy:1:122");
    assert_eq!(from_store.backends, from_files.backends);
    assert_eq!(from_store.key_index.entries(), from_files.key_index.entries());
    assert_eq!(from_store.users, from_files.users);
    assert_eq!(from_store.version_sets, from_files.version_sets);
    assert!(from_store.apis.iter().any(|api| api.revision == "1" && api.version == "v2"), "{:?}", from_store.apis);
    assert_eq!(from_store.groups, from_files.groups);
}

#[test]
fn an_exported_directory_declares_the_same_resources() {
    let dir = directory();
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    let service = store_of(&declared);
    let exported = TempDir::new("exported");
    for (file, rendered) in files(service.state()) {
        exported.write(&file, &rendered.text);
    }
    let (_, again) = load_declared(&exported.0, &NamedValues::default()).unwrap();
    let strip = |list: &[Declared]| list.iter().map(|d| (d.path.to_string(), d.properties.clone())).collect::<Vec<_>>();
    assert_eq!(strip(&again), strip(&declared));
    let files_of = |list: &[Declared]| list.iter().map(|d| d.file.clone()).collect::<Vec<_>>();
    assert_eq!(files_of(&again), files_of(&declared));
}

#[test]
fn apim_properties_without_a_key_survive_the_directory() {
    let dir = TempDir::new("apim");
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    let api = json!({"displayName": "A", "path": "a", "serviceUrl": "http://127.0.0.1:1", "description": "Shown in the portal",
                     "contact": {"name": "Team", "email": "team@example.com"}, "subscriptionRequired": true});
    let writes = vec![Write::Put {
        path: ResourcePath::parse("/apis/a").unwrap(),
        properties: api.clone(),
        origin: Origin::Store,
    }];
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    for (file, rendered) in files(service.state()) {
        dir.write(&file, &rendered.text);
    }
    let text = std::fs::read_to_string(dir.0.join("apis/a/api.toml")).unwrap();
    assert!(text.contains("[apim.contact]"), "{text}");
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    assert_eq!(declared[0].properties, api);
}

#[test]
fn a_bad_policy_in_the_store_is_reported_at_its_resource_line_and_column() {
    let dir = directory();
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    let mut service = store_of(&declared);
    let policy = "<policies>\n  <inbound>\n    <no-such-policy />\n  </inbound>\n</policies>";
    let writes = vec![Write::Put {
        path: ResourcePath::parse("/apis/echo/policies/policy").unwrap(),
        properties: json!({"value": policy, "format": "rawxml"}),
        origin: Origin::Store,
    }];
    service.write(writes, &[], Authority::ConfigDirectory, &actor()).unwrap();
    let diagnostics =
        compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut Default::default()).unwrap_err();
    let first = &diagnostics.items[0];
    assert_eq!(first.file, Path::new("/apis/echo/policies/policy"), "{diagnostics}");
    let location = first.location.expect("a position in the policy");
    assert_eq!((location.line, location.column), (3, 6), "{diagnostics}");
}

#[test]
fn a_cached_compile_after_a_change_equals_a_fresh_one() {
    let dir = directory();
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    let mut service = store_of(&declared);
    let mut cache = crate::config::StoreCache::default();
    let first = compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut cache).unwrap();
    assert!(!cache.files.is_empty() && !cache.programs.is_empty());
    let again = compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut cache).unwrap();
    assert_eq!(again, first, "an unchanged store compiles to the same config from the cache");

    let policy = "<policies><inbound><base /><set-header name=\"x-changed\" exists-action=\"override\"><value>yes</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>";
    let subscription =
        json!({"displayName": "New", "scope": "/apis", "state": "active", "primaryKey": "k9", "secondaryKey": "k10"});
    let writes = vec![
        Write::Put {
            path: ResourcePath::parse("/apis/echo/operations/get-user/policies/policy").unwrap(),
            properties: json!({"value": policy, "format": "rawxml"}),
            origin: Origin::Store,
        },
        Write::Put {
            path: ResourcePath::parse("/subscriptions/new").unwrap(),
            properties: subscription,
            origin: Origin::Store,
        },
    ];
    service.write(writes, &[], Authority::ConfigDirectory, &actor()).unwrap();
    let cached = compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut cache).unwrap();
    let fresh =
        compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut Default::default()).unwrap();
    assert_eq!(cached, fresh);
    assert_ne!(cached.programs, first.programs);
    assert_eq!(cached.subscriptions.len(), first.subscriptions.len() + 1);
}

/// One change through `compile_change` (the way the management service compiles), checked
/// against a compile of the whole store from nothing: the same config, or both refusing.
/// A refused change is undone, as the service undoes it.
fn change_equals_full_compile(
    service: &mut Service,
    cache: &mut crate::config::StoreCache,
    dir: &Path,
    writes: Vec<Write>,
) -> Result<(), String> {
    let changed: Vec<ResourcePath> = writes.iter().map(|write| write.path().clone()).collect();
    let before: Vec<Write> = changed
        .iter()
        .map(|path| match service.state().get(path.as_str()) {
            Some(resource) => Write::Put {
                path: path.clone(),
                properties: resource.properties.clone(),
                origin: resource.origin.clone(),
            },
            None => Write::Delete { path: path.clone() },
        })
        .collect();
    service.write(writes, &[], Authority::ConfigDirectory, &actor()).unwrap();
    let values = NamedValues::default();
    let patched = crate::config::compile_change(service.state(), &changed, dir, &values, [1, 2], cache);
    let fresh = compile_state(service.state(), dir, &values, [1, 2], &mut Default::default());
    match (patched, fresh) {
        (Ok(patched), Ok(fresh)) => {
            assert_eq!(patched, fresh, "a patched compile equals a compile of the whole store");
            cache.commit();
            Ok(())
        }
        (Err(patched), Err(fresh)) => {
            assert_eq!(patched.items[0].message, fresh.items[0].message);
            service.write(before, &[], Authority::ConfigDirectory, &actor()).unwrap();
            Err(patched.items[0].message.clone())
        }
        (patched, fresh) => panic!("the patched compile gave {patched:?}, the whole store {fresh:?}"),
    }
}

fn put(path: &str, properties: serde_json::Value) -> Write {
    Write::Put { path: ResourcePath::parse(path).unwrap(), properties, origin: Origin::Store }
}

fn subscription(scope: &str, primary: &str, secondary: &str) -> serde_json::Value {
    json!({"displayName": "S", "scope": scope, "state": "active", "primaryKey": primary, "secondaryKey": secondary})
}

#[test]
fn subscription_changes_are_patched_into_the_last_compile_and_equal_a_full_compile() {
    let dir = directory();
    let (_, declared) = load_declared(&dir.0, &NamedValues::default()).unwrap();
    let mut service = store_of(&declared);
    let mut cache = crate::config::StoreCache::default();
    compile_state(service.state(), &dir.0, &NamedValues::default(), [1, 2], &mut cache).unwrap();
    cache.commit();
    let mut step = |service: &mut Service, writes| change_equals_full_compile(service, &mut cache, &dir.0, writes);

    // New subscriptions, placed in table order (before and after `demo`).
    step(&mut service, vec![put("/subscriptions/alpha", subscription("/apis", "a1", "a2"))]).unwrap();
    step(&mut service, vec![put("/subscriptions/zulu", subscription("/apis/echo", "z1", "z2"))]).unwrap();
    // `a-b.toml` sorts before `a.toml` though `a` sorts before `a-b`: the table follows the files.
    step(&mut service, vec![put("/subscriptions/a", subscription("/apis", "x1", "x2"))]).unwrap();
    step(&mut service, vec![put("/subscriptions/a-b", subscription("/products/starter", "y1", "y2"))]).unwrap();
    // A key changed; two subscriptions trading keys in one change.
    step(&mut service, vec![put("/subscriptions/alpha", subscription("/apis", "a1-new", "a2"))]).unwrap();
    step(
        &mut service,
        vec![
            put("/subscriptions/alpha", subscription("/apis", "z1", "a2")),
            put("/subscriptions/zulu", subscription("/apis/echo", "a1-new", "z2")),
        ],
    )
    .unwrap();
    // Refusals name what is wrong, and nothing changes.
    let taken = step(&mut service, vec![put("/subscriptions/dup", subscription("/apis", "k1", "d2"))]).unwrap_err();
    assert!(taken.contains("already used by subscription \"demo\""), "{taken}");
    let twice = step(
        &mut service,
        vec![
            put("/subscriptions/one", subscription("/apis", "same", "o2")),
            put("/subscriptions/two", subscription("/apis", "same", "t2")),
        ],
    )
    .unwrap_err();
    assert!(twice.contains("already used"), "{twice}");
    let unknown = step(&mut service, vec![put("/subscriptions/bad", subscription("/apis/nope", "b1", "b2"))]);
    assert!(unknown.unwrap_err().contains("unknown API \"nope\""));
    let revision =
        step(&mut service, vec![put("/subscriptions/bad", subscription("/apis/books-v2;rev=1", "b1", "b2"))]);
    assert!(revision.unwrap_err().contains("covers all its revisions"));
    let mut owned = subscription("/apis", "o1", "o2");
    owned["ownerId"] = json!("/users/nobody");
    let owner = step(&mut service, vec![put("/subscriptions/owned", owned.clone())]);
    assert!(owner.unwrap_err().contains("unknown user \"nobody\""));
    owned["ownerId"] = json!("/users/ada");
    step(&mut service, vec![put("/subscriptions/owned", owned)]).unwrap();
    // A key freed by a removal can be taken in the next change.
    step(&mut service, vec![Write::Delete { path: ResourcePath::parse("/subscriptions/a").unwrap() }]).unwrap();
    step(&mut service, vec![put("/subscriptions/b", subscription("/apis", "x1", "x2"))]).unwrap();
    // Something else changes: the whole store is compiled, and patches start from that compile.
    let policy = "<policies><inbound><base /><set-header name=\"x-p\" exists-action=\"override\"><value>1</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>";
    step(&mut service, vec![put("/apis/echo/policies/policy", json!({"value": policy, "format": "rawxml"}))]).unwrap();
    step(&mut service, vec![put("/subscriptions/c", subscription("/apis/echo", "c1", "c2"))]).unwrap();
    // A new API moves the indexes of the others: the kept subscriptions are resolved again.
    let api = json!({"displayName": "First", "path": "first", "serviceUrl": "http://127.0.0.1:9009"});
    step(&mut service, vec![put("/apis/aaa", api)]).unwrap();
    step(&mut service, vec![put("/subscriptions/d", subscription("/apis/aaa", "d1", "d2"))]).unwrap();
    step(&mut service, vec![put("/subscriptions/e", subscription("/apis/pool", "e1", "e2"))]).unwrap();
    // An API that a subscription names goes: whatever the store does with the subscription, the
    // patched and the whole compile agree.
    let _ = step(&mut service, vec![Write::Delete { path: ResourcePath::parse("/apis/pool").unwrap() }]);
    step(&mut service, vec![put("/subscriptions/f", subscription("/apis", "f1", "f2"))]).unwrap();
    assert_eq!(cache.patches(), 13, "every subscription-only change that compiled was a patch");
    assert_eq!(cache.kept_subscriptions(), 2, "the policy and the new API took the subscriptions as they were");
}
