//! `apply`: plans and what they write, against a real SQLite store.

use std::path::PathBuf;

use portcullis_management::resource::ResourcePath;
use portcullis_management::store::SqliteStore;
use serde_json::json;

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-apply-{}-{next}", std::process::id()));
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

fn service(dir: &Path) -> Service {
    let compiler = StoreCompiler::new(dir.to_path_buf(), NamedValues::default(), None);
    Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(compiler)).unwrap().0
}

fn config() -> TempDir {
    let dir = TempDir::new();
    dir.write("apis/echo/api.toml", "name = \"Echo\"\npath = \"echo\"\nbackend-url = \"http://127.0.0.1:9000\"\n");
    dir.write("apis/echo/operations/get.toml", "method = \"GET\"\nurl-template = \"/\"\n");
    dir.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis/echo\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    dir
}

fn resources(plan: &[Planned]) -> Vec<&str> {
    plan.iter().map(|p| p.resource.as_str()).collect()
}

#[test]
fn a_first_apply_creates_and_a_second_changes_nothing() {
    let dir = config();
    let mut service = service(&dir.0);
    let dry = apply(&mut service, &dir.0, &NamedValues::default(), true).unwrap();
    assert_eq!(resources(&dry.create), ["/apis/echo", "/apis/echo/operations/get", "/subscriptions/demo"]);
    assert!(service.state().is_empty(), "a dry run writes nothing");
    let plan = apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap();
    assert_eq!(plan, dry);
    assert_eq!(service.state().get("/apis/echo").unwrap().origin.file(), Some("apis/echo/api.toml"));
    assert!(apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap().is_empty());
}

#[test]
fn edits_update_and_removed_files_delete_but_store_resources_stay() {
    let dir = config();
    let mut service = service(&dir.0);
    apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap();
    let made = vec![portcullis_management::service::put(
        ResourcePath::parse("/subscriptions/api-made").unwrap(),
        json!({"displayName": "Made", "scope": "/apis", "state": "active", "primaryKey": "k3", "secondaryKey": "k4"}),
    )];
    let actor = Actor { name: "test".into(), action: "test".into() };
    service.write(made, &[], Authority::Store, &actor).unwrap();
    dir.write("apis/echo/api.toml", "name = \"Echo 2\"\npath = \"echo\"\nbackend-url = \"http://127.0.0.1:9000\"\n");
    std::fs::remove_file(dir.0.join("apis/echo/operations/get.toml")).unwrap();
    let plan = apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap();
    assert_eq!(resources(&plan.update), ["/apis/echo"]);
    assert_eq!(resources(&plan.delete), ["/apis/echo/operations/get"]);
    assert!(plan.create.is_empty());
    assert!(service.state().get("/subscriptions/api-made").is_some(), "apply never deletes store resources");
    assert_eq!(service.state().get("/apis/echo").unwrap().properties["displayName"], "Echo 2");
}

#[test]
fn a_directory_that_does_not_compile_changes_nothing() {
    let dir = config();
    let mut service = service(&dir.0);
    apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap();
    dir.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis/nope\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    let error = apply(&mut service, &dir.0, &NamedValues::default(), false).unwrap_err();
    assert!(error.to_string().contains("unknown API \"nope\""), "{error}");
    assert_eq!(service.state().get("/subscriptions/demo").unwrap().properties["scope"], "/apis/echo");
}
