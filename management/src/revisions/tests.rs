use serde_json::json;

use super::*;
use crate::service::{AcceptAll, Authority, Service, put};
use crate::store::{Actor, SqliteStore};

fn actor() -> Actor {
    Actor { name: "test".into(), action: "test".into() }
}

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).unwrap()
}

fn service() -> Service {
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    let writes = vec![
        put(path("/apis/a"), json!({"path": "a", "serviceUrl": "http://one"})),
        put(path("/apis/a/operations/get"), json!({"method": "GET", "urlTemplate": "/"})),
        put(path("/apis/a/operations/old"), json!({"method": "GET", "urlTemplate": "/old"})),
        put(path("/apis/a/releases/r1"), json!({"apiId": "/apis/a;rev=1"})),
    ];
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    service
}

fn paths(service: &Service) -> Vec<String> {
    service.state().iter().map(|r| r.path.to_string()).collect()
}

#[test]
fn a_revision_copies_the_current_one() {
    let mut service = service();
    let writes = create(service.state(), "a", 2, Some("try v2")).unwrap();
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    let revision = service.state().get("/apis/a;rev=2").unwrap();
    assert_eq!(revision.properties["apiRevision"], "2");
    assert_eq!(revision.properties["apiRevisionDescription"], "try v2");
    assert!(service.state().get("/apis/a;rev=2/operations/old").is_some());
    assert!(service.state().get("/apis/a;rev=2/releases/r1").is_none(), "releases stay with the API");
    assert_eq!(create(service.state(), "a", 2, None), Err(RevisionError::Exists { api: "a".into(), revision: 2 }));
    assert_eq!(create(service.state(), "a", 1, None), Err(RevisionError::Exists { api: "a".into(), revision: 1 }));
    assert_eq!(create(service.state(), "b", 2, None), Err(RevisionError::NoApi("b".into())));
}

#[test]
fn a_release_swaps_the_current_revision_with_the_released_one() {
    let mut service = service();
    let writes = create(service.state(), "a", 2, None).unwrap();
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    // Revision 2 changes its backend and drops an operation.
    let edit = vec![put(path("/apis/a;rev=2"), json!({"path": "a", "serviceUrl": "http://two", "apiRevision": "2"}))];
    service.write(edit, &[], Authority::Store, &actor()).unwrap();
    let drop_old = vec![Write::Delete { path: path("/apis/a;rev=2/operations/old") }];
    service.write(drop_old, &[], Authority::Store, &actor()).unwrap();

    let writes = release(service.state(), "a", 2).unwrap();
    service.write(writes, &[], Authority::Store, &actor()).unwrap();
    assert_eq!(service.state().get("/apis/a").unwrap().properties["serviceUrl"], "http://two");
    assert_eq!(service.state().get("/apis/a").unwrap().properties["isCurrent"], true);
    assert_eq!(service.state().get("/apis/a;rev=1").unwrap().properties["serviceUrl"], "http://one");
    assert_eq!(
        paths(&service),
        [
            "/apis/a",
            "/apis/a/operations/get",
            "/apis/a/releases/r1",
            "/apis/a;rev=1",
            "/apis/a;rev=1/operations/get",
            "/apis/a;rev=1/operations/old",
        ]
    );
    assert_eq!(service.store().resources().unwrap().len(), 6, "the store holds what memory holds");
    let numbers: Vec<u32> = revisions(service.state(), "a").into_iter().map(|(n, _)| n).collect();
    assert_eq!(numbers, [2, 1]);
    assert!(release(service.state(), "a", 2).unwrap().is_empty(), "releasing the current one changes nothing");
    assert_eq!(release(service.state(), "a", 7), Err(RevisionError::NoRevision { api: "a".into(), revision: 7 }));
}
