use serde_json::json;

use super::*;

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).unwrap()
}

fn put(text: &str, properties: Value) -> Write {
    Write::Put { path: path(text), properties, origin: Origin::Store }
}

fn actor() -> Actor {
    Actor { name: "test".into(), action: "test".into() }
}

fn paths(store: &impl Store) -> Vec<String> {
    store.resources().unwrap().into_iter().map(|r| r.path.to_string()).collect()
}

#[test]
fn a_commit_is_read_back_after_reopening_the_file() {
    let dir = std::env::temp_dir().join(format!("portcullis-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.db");
    let _ = std::fs::remove_file(&file);
    {
        let mut store = open(&file).unwrap();
        let change =
            store.commit(&[put("/apis/echo", json!({"path": "echo"}))], &actor(), "2026-12-07T00:00:00Z").unwrap();
        assert_eq!(change.writes, ["PUT /apis/echo"]);
    }
    let store = open(&file).unwrap();
    let resources = store.resources().unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].properties, json!({"path": "echo"}));
    assert_eq!(resources[0].etag(), "\"1\"");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deleting_an_api_deletes_what_belongs_to_it_and_links_to_it() {
    let mut store = SqliteStore::in_memory().unwrap();
    let writes = [
        put("/apis/echo", json!({"path": "echo"})),
        put("/apis/echo/operations/get", json!({"method": "GET", "urlTemplate": "/"})),
        put("/apis/echo/operations/get/policies/policy", json!({"value": "<policies/>"})),
        put("/products/starter", json!({"displayName": "Starter"})),
        put("/products/starter/apis/echo", json!({})),
    ];
    store.commit(&writes, &actor(), "t").unwrap();
    store.commit(&[Write::Delete { path: path("/apis/echo") }], &actor(), "t").unwrap();
    assert_eq!(paths(&store), ["/products/starter"]);
}

#[test]
fn a_child_without_its_parent_is_refused_and_nothing_is_written() {
    let mut store = SqliteStore::in_memory().unwrap();
    let writes = [
        put("/products/starter", json!({"displayName": "Starter"})),
        put("/apis/missing/operations/get", json!({"method": "GET", "urlTemplate": "/"})),
    ];
    assert!(store.commit(&writes, &actor(), "t").is_err());
    assert!(paths(&store).is_empty());
    assert!(store.changes(0, 10).unwrap().is_empty(), "the audit entry was rolled back too");
}

#[test]
fn the_audit_log_lists_changes_newest_first() {
    let mut store = SqliteStore::in_memory().unwrap();
    store.commit(&[put("/tags/a", json!({"displayName": "a"}))], &actor(), "t1").unwrap();
    store.commit(&[put("/tags/b", json!({"displayName": "b"}))], &actor(), "t2").unwrap();
    let changes = store.changes(0, 10).unwrap();
    assert_eq!(changes.iter().map(|c| c.at.as_str()).collect::<Vec<_>>(), ["t2", "t1"]);
    assert_eq!(store.changes(1, 10).unwrap().len(), 1);
}

#[test]
fn tokens_are_found_by_hash_and_names_are_unique() {
    let mut store = SqliteStore::in_memory().unwrap();
    let token = Token { name: "ci".into(), read_only: true, created_at: "t".into(), expires_at: None };
    store.create_token(&token, "h1").unwrap();
    assert!(matches!(store.create_token(&token, "h2"), Err(StoreError::TokenExists(_))));
    assert_eq!(store.token_by_hash("h1").unwrap(), Some(token));
    assert_eq!(store.token_by_hash("h2").unwrap(), None);
    assert!(store.delete_token("ci").unwrap());
    assert!(store.tokens().unwrap().is_empty());
}
