use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::store::SqliteStore;

/// A compiler that refuses any API whose path is "bad", and counts what it publishes.
#[derive(Default)]
struct Fake {
    published: Arc<AtomicUsize>,
}

impl Compiler for Fake {
    fn compile(&mut self, state: &State) -> Result<Compiled, Vec<Problem>> {
        for resource in state.of_kind(Kind::Api) {
            if resource.properties["path"] == "bad" {
                let target = resource.path.to_string();
                return Err(vec![Problem { target, message: "bad path".into(), line: None, column: None }]);
            }
        }
        Ok(Box::new(state.len()))
    }

    fn publish(&mut self, _compiled: Compiled) {
        self.published.fetch_add(1, Ordering::SeqCst);
    }
}

fn service() -> (Service, Arc<AtomicUsize>) {
    let fake = Fake::default();
    let published = fake.published.clone();
    let service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(fake)).unwrap().0;
    (service, published)
}

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).unwrap()
}

fn actor() -> Actor {
    Actor { name: "test".into(), action: "test".into() }
}

#[test]
fn a_change_that_does_not_compile_changes_nothing() {
    let (mut service, published) = service();
    service.write(vec![put(path("/apis/a"), json!({"path": "a"}))], &[], Authority::Store, &actor()).unwrap();
    let error =
        service.write(vec![put(path("/apis/a"), json!({"path": "bad"}))], &[], Authority::Store, &actor()).unwrap_err();
    assert!(matches!(error, WriteError::Invalid(ref problems) if problems[0].target == "/apis/a"), "{error}");
    assert_eq!(service.state().get("/apis/a").unwrap().properties, json!({"path": "a"}));
    assert_eq!(service.store().resources().unwrap()[0].properties, json!({"path": "a"}));
    assert_eq!(published.load(Ordering::SeqCst), 2, "open and the first write");
}

#[test]
fn if_match_must_name_the_current_version() {
    let (mut service, _) = service();
    service.write(vec![put(path("/tags/t"), json!({"displayName": "t"}))], &[], Authority::Store, &actor()).unwrap();
    let etag = service.state().get("/tags/t").unwrap().etag();
    let write = || vec![put(path("/tags/t"), json!({"displayName": "u"}))];
    service.write(write(), &[("/tags/t".into(), etag.clone())], Authority::Store, &actor()).unwrap();
    let error = service.write(write(), &[("/tags/t".into(), etag)], Authority::Store, &actor()).unwrap_err();
    assert!(matches!(error, WriteError::Precondition { .. }), "{error}");
}

#[test]
fn config_owned_resources_are_refused_to_the_api_with_their_file() {
    let (mut service, _) = service();
    let origin = Origin::Config { file: "apis/a/api.toml".into() };
    let declared = Write::Put { path: path("/apis/a"), properties: json!({"path": "a"}), origin };
    service.write(vec![declared], &[], Authority::ConfigDirectory, &actor()).unwrap();
    let operation = put(path("/apis/a/operations/get"), json!({"method": "GET", "urlTemplate": "/"}));
    let error = service.write(vec![operation], &[], Authority::Store, &actor()).unwrap_err();
    assert!(matches!(error, WriteError::Owned { ref file, .. } if file == "apis/a/api.toml"), "{error}");
}

#[test]
fn deleting_an_api_takes_its_revisions_children_and_links() {
    let (mut service, _) = service();
    let writes = vec![
        put(path("/apis/a"), json!({"path": "a"})),
        put(path("/apis/a;rev=2"), json!({"path": "a", "apiRevision": "2"})),
        put(path("/apis/a;rev=2/operations/get"), json!({"method": "GET", "urlTemplate": "/"})),
        put(path("/products/p"), json!({"displayName": "P"})),
        put(path("/products/p/apis/a"), json!({})),
        put(path("/apis/ab"), json!({"path": "ab"})),
    ];
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    let delete = vec![Write::Delete { path: path("/apis/a") }];
    let change = service.write(delete, &[], Authority::Store, &actor()).unwrap();
    assert_eq!(change.writes.len(), 4, "{:?}", change.writes);
    let left: Vec<_> = service.state().iter().map(|r| r.path.to_string()).collect();
    assert_eq!(left, ["/apis/ab", "/products/p"]);
    assert_eq!(service.store().resources().unwrap().len(), 2);
}
