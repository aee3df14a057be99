use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::service::{AcceptAll, Authority, Service};
use crate::store::{Actor, SqliteStore};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apiops")
}

/// A fresh folder under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("portcullis-apiops-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn file(&self, relative: &str, text: &str) {
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

/// The writes committed to a real (in-memory SQLite) store: its foreign keys check the order.
fn committed(writes: Vec<Write>) -> Service {
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    let actor = Actor { name: "test".into(), action: "apiops import".into() };
    service.write(writes, &[], Authority::Store, &actor).unwrap_or_else(|error| panic!("{error}"));
    service
}

/// The puts of an import, without the subscription keys it generates (fresh each time: extracts
/// carry none).
fn puts(import: &ApiOpsImport) -> Vec<(String, Value)> {
    import
        .writes
        .iter()
        .map(|write| match write {
            Write::Put { path, properties, .. } => {
                let mut properties = properties.clone();
                if let Some(object) = properties.as_object_mut() {
                    object.remove("primaryKey");
                    object.remove("secondaryKey");
                }
                (path.to_string(), properties)
            }
            Write::Delete { path } => panic!("an import deletes nothing: {path}"),
        })
        .collect()
}

fn report_has(import: &ApiOpsImport, file: &str, kind: ReportKind, fragment: &str) -> bool {
    import.report.iter().any(|line| line.file == file && line.kind == kind && line.message.contains(fragment))
}

#[test]
fn the_fixture_imports_every_resource_it_models() {
    let import = super::import(&fixture()).unwrap();
    let puts = puts(&import);
    let paths: Vec<&str> = puts.iter().map(|(path, _)| path.as_str()).collect();
    for expected in [
        "/policies/policy",
        "/apis/echo",
        "/apis/echo;rev=2",
        "/apis/echo/operations/get-echo",
        "/apis/echo/operations/create-resource",
        "/apis/echo/operations/get-echo/policies/policy",
        "/apis/echo/policies/policy",
        "/apis/echo/schemas/openapi",
        "/apis/echo/tags/public",
        "/apis/echo;rev=2/operations/put-echo",
        "/apis/orders-v1/operations/get-order",
        "/apis/orders-v2/operations/create-order/policies/policy",
        "/apis/legacy-soap",
        "/apiVersionSets/orders",
        "/products/starter",
        "/products/starter/policies/policy",
        "/products/starter/apis/echo",
        "/products/starter/groups/developers",
        "/products/starter/groups/partners",
        "/products/unlimited/apis/orders-v2",
        "/products/unlimited/groups/guests",
        "/products/unlimited/policies/policy",
        "/namedValues/backend-key",
        "/namedValues/environment",
        "/backends/orders-backend",
        "/policyFragments/cors",
        "/subscriptions/starter-sub",
        "/subscriptions/orders-sub",
        "/tags/public",
        "/groups/partners",
        "/groups/developers",
        "/groups/guests",
    ] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:#?}");
    }
    let get = |path: &str| &puts.iter().find(|(p, _)| p == path).unwrap().1;
    // ARM ids stay as written; the model reads their tails.
    let v1: crate::model::ApiProperties = serde_json::from_value(get("/apis/orders-v1").clone()).unwrap();
    assert!(v1.api_version_set_id.as_deref().unwrap().starts_with("/subscriptions/"));
    assert_eq!(v1.version_set(), Some("orders"));
    let subscription: crate::model::SubscriptionProperties =
        serde_json::from_value(get("/subscriptions/starter-sub").clone()).unwrap();
    assert_eq!((subscription.relative_scope(), subscription.owner()), ("/products/starter", Some("1")));
    // Bare and wrapped information files read alike; revisions keep their number.
    assert_eq!(get("/apis/echo;rev=2")["apiRevision"], "2");
    assert_eq!(get("/products/unlimited")["approvalRequired"], true);
    // An unreachable backend imports all the same: nothing is fetched.
    assert_eq!(get("/apis/echo")["serviceUrl"], "https://echo.unreachable.invalid/api");
    assert!(get("/policies/policy")["value"].as_str().unwrap().contains("X-Gateway"));
    let fragment = get("/policyFragments/cors");
    assert_eq!(fragment["description"], "CORS for the browser apps");
    assert!(fragment["value"].as_str().unwrap().starts_with("<fragment>"));
    assert_eq!(get("/namedValues/backend-key")["secret"], true);
    assert_eq!(get("/apis/orders-v1/schemas/openapi")["contentType"], crate::openapi::SWAGGER_DEFINITIONS_CONTENT_TYPE);
    // The store takes them in this order (parents and link targets first).
    let service = committed(import.writes.clone());
    assert_eq!(service.state().len(), puts.len());
}

#[test]
fn the_report_lists_every_file_and_what_is_not_modelled() {
    let import = super::import(&fixture()).unwrap();
    let kinds = [ReportKind::Imported, ReportKind::NotModelled];
    for file in walk_files(&fixture()) {
        assert!(
            import.report.iter().any(|line| line.file == file && kinds.contains(&line.kind)),
            "{file} is not in the report"
        );
    }
    use ReportKind::{Imported, NotModelled, Warning};
    let cases = [
        ("apis/legacy-soap/specification.wsdl", NotModelled, "WSDL specifications are not imported"),
        ("apis/echo/diagnostics/applicationinsights/diagnosticInformation.json", NotModelled, "diagnostics"),
        ("loggers/appinsights/loggerInformation.json", NotModelled, "loggers"),
        ("gateways/edge/gatewayInformation.json", NotModelled, "gateway"),
        ("apis/echo/apiInformation.json", NotModelled, "authenticationSettings: not modelled, kept as written"),
        ("named values/backend-key/namedValueInformation.json", NotModelled, "keyVault"),
        ("backends/orders-backend/backendInformation.json", NotModelled, "circuitBreaker"),
        ("apis/echo/specification.yaml", Warning, "components.securitySchemes"),
        ("apis/echo/specification.yaml", Imported, "/apis/echo/operations/get-echo"),
        ("groups", Warning, "/groups/developers: a system group, added"),
    ];
    for (file, kind, fragment) in cases {
        assert!(report_has(&import, file, kind, fragment), "no {kind:?} line for {file} with {fragment:?}");
    }
}

fn walk_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                pending.push(entry);
            } else {
                files.push(entry.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files
}

#[test]
fn import_export_import_gives_the_same_writes() {
    let first = super::import(&fixture()).unwrap();
    let service = committed(first.writes.clone());
    let out = TempDir::new("round-trip");
    let report = super::export(service.state(), &out.0).unwrap();
    assert!(report.iter().any(|line| line.file == "apis/orders-v1/specification.json"), "Swagger stays Swagger");
    let second = super::import(&out.0).unwrap();
    assert_eq!(puts(&first), puts(&second));
    // And the export of the second import is the same files.
    let again = TempDir::new("round-trip-again");
    super::export(committed(second.writes).state(), &again.0).unwrap();
    let mut files = walk_files(&out.0);
    files.sort();
    for file in &files {
        let (a, b) = (std::fs::read(out.0.join(file)).unwrap(), std::fs::read(again.0.join(file)).unwrap());
        assert_eq!(a, b, "{file} differs");
    }
    assert_eq!(files.len(), walk_files(&again.0).len());
}

#[test]
fn exports_leave_secrets_out() {
    let secret_key = "0123456789abcdef0123456789abcdef";
    let service = committed(vec![
        crate::service::put(
            crate::resource::ResourcePath::parse("/namedValues/key").unwrap(),
            json!({"displayName": "key", "value": "hunter2", "secret": true}),
        ),
        crate::service::put(
            crate::resource::ResourcePath::parse("/namedValues/plain").unwrap(),
            json!({"displayName": "plain", "value": "visible", "secret": false}),
        ),
        crate::service::put(
            crate::resource::ResourcePath::parse("/subscriptions/s").unwrap(),
            json!({"scope": "/apis", "state": "active", "primaryKey": secret_key, "secondaryKey": secret_key}),
        ),
    ]);
    let out = TempDir::new("secrets");
    let report = super::export(service.state(), &out.0).unwrap();
    let all: String =
        walk_files(&out.0).iter().map(|file| std::fs::read_to_string(out.0.join(file)).unwrap()).collect();
    assert!(!all.contains("hunter2") && !all.contains(secret_key), "{all}");
    assert!(all.contains("visible"));
    assert_eq!(report.iter().filter(|line| line.kind == ReportKind::Warning).count(), 3, "{report:?}");
}

#[test]
fn errors_name_the_file() {
    let missing = super::import(Path::new("/nonexistent/portcullis-extract"));
    assert!(matches!(missing, Err(ApiOpsError::Io { .. })));
    let cases = [
        ("apis/a/apiInformation.json", "{not json", "not valid JSON"),
        ("apis/a/apiInformation.json", "[1]", "expected a JSON object"),
        ("apis/a/apiInformation.json", "{\"properties\": {\"displayName\": 3}}", "invalid"),
        ("apis/a/specification.yaml", "openapi: 9.0.0", "not supported"),
        ("products/p/apis.json", "{\"a\": 1}", "expected a list of names"),
        ("products/p/groups.json", "[3]", "expected a list of names"),
    ];
    for (file, text, fragment) in cases {
        let dir = TempDir::new("errors");
        dir.file(file, text);
        match super::import(&dir.0) {
            Err(ApiOpsError::File { file: named, message }) => {
                assert_eq!(named, file);
                assert!(message.contains(fragment), "{message}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    let dir = TempDir::new("large");
    dir.file("policy.xml", &" ".repeat(usize::try_from(FILE_BYTES_MAX).unwrap() + 1));
    assert!(matches!(super::import(&dir.0), Err(ApiOpsError::File { ref message, .. }) if message.contains("limited")));
}

#[test]
fn what_cannot_be_stored_is_skipped_with_a_line() {
    let dir = TempDir::new("skipped");
    dir.file("apis/bad id/apiInformation.json", "{\"path\": \"x\"}");
    dir.file("apis/a/apiInformation.json", "{\"path\": \"a\"}");
    dir.file("apis/a/operations/nowhere/policy.xml", "<policies />");
    dir.file("products/p/apis/missing/productApiInformation.json", "{}");
    dir.file("products/p/productInformation.json", "{\"displayName\": \"P\"}");
    dir.file("policy fragments/f/policyFragmentInformation.json", "{}");
    dir.file("random.txt", "hello");
    dir.file(".git/HEAD", "ref: refs/heads/main");
    let import = super::import(&dir.0).unwrap();
    let paths: Vec<String> = puts(&import).into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths, ["/apis/a", "/products/p"]);
    use ReportKind::{NotModelled, Warning};
    assert!(report_has(&import, "apis/bad id/apiInformation.json", Warning, "not a valid id"));
    assert!(report_has(&import, "apis/a/operations/nowhere/policy.xml", Warning, "which the extract does not hold"));
    assert!(report_has(&import, "products/p/apis/missing/productApiInformation.json", Warning, "/apis/missing"));
    assert!(report_has(&import, "policy fragments/f/policyFragmentInformation.json", Warning, "without policy.xml"));
    assert!(report_has(&import, "random.txt", NotModelled, "not a file of the APIOps layout"));
    assert!(report_has(&import, ".git", NotModelled, "hidden"));
    committed(import.writes);
}

#[test]
fn an_export_into_a_file_fails_with_the_path() {
    let dir = TempDir::new("export-error");
    dir.file("taken", "a file, not a folder");
    let service = committed(super::import(&fixture()).unwrap().writes);
    let error = super::export(service.state(), &dir.0.join("taken")).unwrap_err();
    assert!(matches!(error, ApiOpsError::Io { ref path, .. } if path.contains("taken")), "{error}");
}

#[test]
fn subscriptions_without_keys_get_generated_ones() {
    let import = super::import(&fixture()).unwrap();
    let keys: Vec<(&str, &str)> = import
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::Put { path, properties, .. } if path.kind() == crate::resource::Kind::Subscription => {
                Some((properties["primaryKey"].as_str()?, properties["secondaryKey"].as_str()?))
            }
            _ => None,
        })
        .collect();
    assert!(!keys.is_empty());
    for (primary, secondary) in keys {
        assert_eq!((primary.len(), secondary.len()), (32, 32));
        assert_ne!(primary, secondary);
    }
    assert!(import.report.iter().any(|line| line.message.contains("new ones were generated")));
}
