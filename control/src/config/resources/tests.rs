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
