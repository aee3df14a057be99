use serde_json::{Value, json};

use super::*;
use crate::model::OperationProperties;
use crate::resource::ResourcePath;
use crate::service::{AcceptAll, Authority, Service, State, put};
use crate::store::{Actor, SqliteStore, Write};

const PETSTORE_2: &str = include_str!("../../tests/fixtures/openapi/petstore-2.0.json");
const PETSTORE_30: &str = include_str!("../../tests/fixtures/openapi/petstore-3.0.yaml");
const PETSTORE_31: &str = include_str!("../../tests/fixtures/openapi/petstore-3.1.yaml");
const GATEWAY: &str = "https://gateway.example.com";

fn options() -> ImportOptions {
    ImportOptions { path: "pets".into(), ..ImportOptions::default() }
}

fn imported(text: &str) -> ImportedApi {
    import(text, &options()).unwrap_or_else(|error| panic!("{error}"))
}

fn operation<'a>(imported: &'a ImportedApi, id: &str) -> &'a OperationProperties {
    imported.operations.iter().find(|(name, _)| name == id).map(|(_, op)| op).unwrap_or_else(|| {
        let ids: Vec<_> = imported.operations.iter().map(|(id, _)| id).collect();
        panic!("no operation {id} in {ids:?}")
    })
}

fn warned(imported: &ImportedApi, at: &str) -> bool {
    imported.warnings.iter().any(|warning| warning.at == at)
}

fn ids(imported: &ImportedApi) -> Vec<&str> {
    imported.operations.iter().map(|(id, _)| id.as_str()).collect()
}

#[test]
fn openapi_30_yaml_maps_as_apim_does() {
    let api = imported(PETSTORE_30);
    assert_eq!(api.api.display_name, "Swagger Petstore - OpenAPI 3.0");
    assert_eq!(api.api.path, "pets");
    // The first HTTPS server (variables at their defaults), not the first server.
    assert_eq!(api.api.service_url.as_deref(), Some("https://eu.petstore3.swagger.io/api/v3"));
    assert!(api.api.subscription_required && api.api.protocols == ["https"]);
    assert_eq!(api.api.api_version, None);
    assert_eq!(ids(&api), ["updatepet", "addpet", "findpetsbystatus", "getpetbyid", "deletepet", "getorderbyid"]);

    let find = operation(&api, "findpetsbystatus");
    assert_eq!(find.display_name, "Finds Pets by status");
    // The required query parameter (from components.parameters) joins the template.
    assert_eq!(find.url_template, "/pet/findByStatus?limit={limit}");
    let limit = &find.template_parameters[0];
    assert_eq!((limit.name.as_str(), limit.parameter_type.as_str(), limit.required), ("limit", "integer", true));
    assert_eq!(limit.examples, Some(json!({"default": {"value": 20}})));
    let status = &find.request.as_ref().unwrap().query_parameters[0];
    assert_eq!(status.values, ["available", "pending", "sold"]);
    assert_eq!(status.default_value.as_deref(), Some("available"));
    let ok = &find.responses[0];
    assert_eq!(ok.headers[0].name, "X-Rate-Limit-Remaining");
    // An inline schema moves into the schema resource; named examples are resolved.
    let representation = &ok.representations[0];
    assert_eq!(representation.schema_id.as_deref(), Some(SCHEMA_ID));
    assert_eq!(representation.type_name.as_deref(), Some("Findpetsbystatus200ApplicationJsonResponse"));
    assert_eq!(representation.examples.as_ref().unwrap()["two"]["summary"], "two pets");

    let get = operation(&api, "getpetbyid");
    assert_eq!(get.url_template, "/pet/{petId}");
    assert_eq!(get.template_parameters[0].parameter_type, "integer");
    assert_eq!(get.request, None, "the body of a GET is dropped, the cookie too");
    assert_eq!(get.responses.len(), 1, "4XX is not a status code");

    let update = operation(&api, "updatepet");
    let request = update.request.as_ref().unwrap();
    assert_eq!(request.representations.len(), 2);
    assert!(request.representations.iter().all(|r| r.type_name.as_deref() == Some("Pet")));
    assert_eq!(
        update.responses[0].representations[0].examples,
        Some(json!({"default": {"value": {"id": 10, "name": "doggie"}}}))
    );
    // requestBodies and responses by reference.
    let add = operation(&api, "addpet");
    assert_eq!(
        add.request.as_ref().unwrap().description.as_deref(),
        Some("Pet object that needs to be added to the store")
    );
    assert_eq!(add.responses[0].description.as_deref(), Some("the pet"));
    // A query parameter named like a path parameter cannot join the template.
    let order = operation(&api, "getorderbyid");
    assert_eq!(order.url_template, "/store/order/{orderId}");
    assert_eq!(order.request.as_ref().unwrap().query_parameters[0].name, "orderId");

    let (id, schema) = &api.schemas[0];
    assert_eq!((id.as_str(), schema.content_type.as_str()), (SCHEMA_ID, OPENAPI_COMPONENTS_CONTENT_TYPE));
    let schemas = &schema.document["components"]["schemas"];
    assert_eq!(schemas["Pet"]["properties"]["status"]["x-internal-note"], "kept verbatim inside schemas");
    assert_eq!(schemas["Findpetsbystatus200ApplicationJsonResponse"]["items"]["$ref"], "#/components/schemas/Pet");
    for at in [
        "externalDocs",
        "tags",
        "x-generator",
        "components.securitySchemes",
        "components.parameters",
        "paths./pet.put.security",
        "paths./pet.put.responses.default",
        "paths./pet/findByStatus.get.parameters.status.explode",
        "paths./pet/{petId}.trace",
        "paths./pet/{petId}.get.parameters.session",
        "paths./pet/{petId}.get.requestBody",
        "paths./pet/{petId}.delete.callbacks",
        "paths./store/order/{orderId}.get.parameters.orderId",
    ] {
        assert!(warned(&api, at), "no warning at {at}: {:?}", api.warnings);
    }
}

#[test]
fn swagger_20_json_maps_as_apim_does() {
    let api = imported(PETSTORE_2);
    assert_eq!(api.api.display_name, "Swagger Petstore");
    // host + basePath, HTTPS though http is listed first.
    assert_eq!(api.api.service_url.as_deref(), Some("https://petstore.swagger.io/v2"));
    assert_eq!(api.api.contact.as_ref().and_then(|c| c.email.as_deref()), Some("apiteam@swagger.io"));
    assert_eq!(
        ids(&api),
        [
            "updatepet",
            "addpet",
            "findpetsbystatus",
            "getpetbyid",
            "updatepetwithform",
            "deletepet",
            "getinventory",
            "get-user-login"
        ]
    );
    // No operationId: method and path; no summary: the operationId.
    assert_eq!(operation(&api, "get-user-login").display_name, "Logs user into the system");
    assert_eq!(operation(&api, "getinventory").display_name, "getInventory");
    let login = operation(&api, "get-user-login");
    assert_eq!(login.url_template, "/user/login?username={username}&password={password}");
    assert_eq!(login.template_parameters[0].examples, Some(json!({"default": {"value": "jane"}})), "x-example");

    let update = operation(&api, "updatepet");
    let types: Vec<_> =
        update.request.as_ref().unwrap().representations.iter().map(|r| r.content_type.as_str()).collect();
    assert_eq!(types, ["application/json", "application/xml"], "the operation's consumes");
    let get = operation(&api, "getpetbyid");
    assert_eq!(get.template_parameters[0].parameter_type, "integer", "path-level parameter");
    let ok = &get.responses[0];
    assert_eq!(ok.headers[0].parameter_type, "integer");
    assert_eq!(ok.representations.len(), 2, "one per produces");
    assert_eq!(ok.representations[0].examples.as_ref().unwrap()["default"]["value"]["name"], "doggie");
    assert_eq!(get.responses[1].description.as_deref(), Some("Pet not found"), "#/responses/NotFound");
    let find = operation(&api, "findpetsbystatus");
    assert_eq!(find.url_template, "/pet/findByStatus?status={status}");
    // Both content types of one response share one hoisted schema.
    let names: Vec<_> = find.responses[0].representations.iter().map(|r| r.type_name.clone()).collect();
    assert_eq!(names[0], names[1]);
    assert_eq!(operation(&api, "updatepetwithform").request, None, "formData is dropped");

    let schema = &api.schemas[0].1;
    assert_eq!(schema.content_type, SWAGGER_DEFINITIONS_CONTENT_TYPE);
    assert_eq!(schema.document["definitions"]["Pet"]["properties"]["category"]["$ref"], "#/definitions/Category");
    for at in [
        "securityDefinitions",
        "externalDocs",
        "parameters",
        "paths./pet/{petId}.post.parameters.1",
        "paths./pet/findByStatus.get.parameters.status.collectionFormat",
        "paths./store/inventory.get.x-ms-visibility",
    ] {
        assert!(warned(&api, at), "no warning at {at}: {:?}", api.warnings);
    }
}

#[test]
fn openapi_31_type_lists_and_new_keys() {
    let api = imported(PETSTORE_31);
    assert_eq!(ids(&api), ["listpets", "createpets", "showpetbyid"]);
    let list = operation(&api, "listpets");
    assert_eq!(list.url_template, "/pets?limit={limit}");
    assert_eq!(list.template_parameters[0].parameter_type, "integer", "[integer, null]");
    assert_eq!(list.responses[0].representations[0].type_name.as_deref(), Some("Pets"));
    assert_eq!(
        api.schemas[0].1.document["components"]["schemas"]["Pet"]["properties"]["tag"]["type"],
        json!(["string", "null"])
    );
    for at in ["webhooks", "jsonSchemaDialect", "info.summary"] {
        assert!(warned(&api, at), "no warning at {at}");
    }
}

#[test]
fn json_and_yaml_of_one_document_import_the_same() {
    let value: Value = serde_yaml_ng::from_str(PETSTORE_30).unwrap();
    let from_json = imported(&serde_json::to_string(&value).unwrap());
    assert_eq!(from_json, imported(PETSTORE_30));
}

#[test]
fn options_override_the_backend_and_keep_required_queries_as_queries() {
    let options = ImportOptions {
        path: "v1/pets".into(),
        service_url: Some("http://backend:8080".into()),
        required_query_parameters: QueryParameterTranslation::Query,
    };
    let api = import(PETSTORE_31, &options).unwrap();
    assert_eq!(api.api.service_url.as_deref(), Some("http://backend:8080"));
    assert_eq!(api.api.path, "v1/pets");
    let list = operation(&api, "listpets");
    assert_eq!(list.url_template, "/pets");
    assert!(list.template_parameters.is_empty());
    assert_eq!(list.request.as_ref().unwrap().query_parameters[0].name, "limit");
}

#[test]
fn operation_ids_are_normalised_deduplicated_and_valid() {
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "ids"},
        "servers": [{"url": "aéééé"}, {"url": "http://only-http.example.com"}],
        "paths": {
            "/a": {"get": {"operationId": "Get Thing!", "responses": {}}},
            "/b": {"get": {"operationId": "get_thing", "responses": {}}},
            "/c": {"get": {"operationId": "GET-THING", "responses": {}}},
            "/": {"get": {"responses": {}}},
            "/d/{id}": {"get": {"operationId": "###", "responses": {}}},
            "/e": {"post": {"operationId": "x".repeat(200), "responses": {}}},
        }
    });
    let api = import(&document.to_string(), &options()).unwrap();
    assert_eq!(ids(&api), ["get", "get-thing", "get-thing-1", "get-thing-2", "get-d-id", &"x".repeat(76)]);
    assert!(api.operations.iter().all(|(id, _)| crate::resource::is_valid_id(id)));
    assert_eq!(api.api.service_url, None, "no HTTPS server");
    assert!(warned(&api, "servers"));
    // An undeclared template parameter is a required string.
    let undeclared = &operation(&api, "get-d-id").template_parameters[0];
    assert_eq!((undeclared.name.as_str(), undeclared.required), ("id", true));
}

fn many_operations(count: usize, operation_id: Option<&str>) -> String {
    let paths: serde_json::Map<String, Value> = (0..count)
        .map(|index| {
            let mut get = json!({"summary": format!("item {index}"), "responses": {"200": {"description": "ok"}}});
            if let Some(id) = operation_id {
                get["operationId"] = json!(id);
            }
            (format!("/items{index}/{{id}}"), json!({"get": get}))
        })
        .collect();
    json!({"openapi": "3.0.1", "info": {"title": "many"}, "paths": paths}).to_string()
}

#[test]
fn every_error_says_what_and_where() {
    let import = |text: &str| import(text, &options()).unwrap_err();
    assert!(matches!(import(&" ".repeat(DOCUMENT_BYTES_MAX + 1)), ImportError::TooLarge { .. }));
    assert!(matches!(import("{\"openapi\": "), ImportError::Json(_)));
    assert!(matches!(import("openapi: [unclosed"), ImportError::Yaml(_)));
    assert!(matches!(import("[1, 2]"), ImportError::NotOpenApi));
    assert!(matches!(import("{\"info\": {}}"), ImportError::NotOpenApi));
    assert_eq!(import("swagger: '1.2'"), ImportError::UnsupportedVersion("1.2".into()));
    assert_eq!(import("openapi: 3.2.0"), ImportError::UnsupportedVersion("3.2.0".into()));
    let external = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get:\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema:\n                $ref: 'pet.yaml#/Pet'\n";
    let error = import(external);
    assert_eq!(
        error,
        ImportError::ExternalReference {
            at: "paths./a.get.responses.200.content.application/json.schema".into(),
            reference: "pet.yaml#/Pet".into()
        }
    );
    assert!(error.to_string().contains("pet.yaml#/Pet"));
    let broken = external.replace("pet.yaml#/Pet", "#/components/schemas/Nope");
    assert!(
        matches!(import(&broken), ImportError::BrokenReference { ref reference, .. } if reference.ends_with("Nope"))
    );
    let broken_parameter = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get:\n      parameters:\n        - $ref: '#/components/parameters/missing'\n";
    assert!(
        matches!(import(broken_parameter), ImportError::BrokenReference { ref at, .. } if at == "paths./a.get.parameters.0")
    );
    let cycle = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get:\n      parameters:\n        - $ref: '#/components/parameters/a'\ncomponents:\n  parameters:\n    a: {$ref: '#/components/parameters/b'}\n    b: {$ref: '#/components/parameters/a'}\n";
    assert!(matches!(import(cycle), ImportError::Invalid { ref message, .. } if message.contains("$ref")));
    let not_object = "openapi: 3.0.0\ninfo: {title: t}\npaths: [1]\n";
    assert!(matches!(import(not_object), ImportError::Invalid { ref at, .. } if at == "paths"));
    let relative = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  pets: {}\n";
    assert!(matches!(import(relative), ImportError::Invalid { ref at, .. } if at == "paths.pets"));
    let unbalanced = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a/{x?y={y}: {}\n";
    assert!(matches!(import(unbalanced), ImportError::Invalid { ref message, .. } if message.contains("'{'")));
    let odd_query = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get:\n      parameters:\n        - {name: 'a=b', in: query, required: true}\n";
    let odd = super::import(odd_query, &options()).unwrap();
    assert_eq!(odd.operations[0].1.url_template, "/a", "found by fuzzing: a name that breaks the template");
    assert!(warned(&odd, "paths./a.get.parameters.a=b"));
    let nameless =
        "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get:\n      parameters:\n        - in: query\n";
    assert!(matches!(import(nameless), ImportError::Invalid { ref message, .. } if message.contains("name")));
    let bad_operation = "openapi: 3.0.0\ninfo: {title: t}\npaths:\n  /a:\n    get: 3\n";
    assert!(matches!(import(bad_operation), ImportError::Invalid { ref at, .. } if at == "paths./a.get"));
    let swagger_bad = "{\"swagger\": \"2.0\", \"paths\": {\"/a\": {\"get\": 3}}}";
    assert!(matches!(import(swagger_bad), ImportError::Invalid { .. }));
    assert!(
        matches!(import(&many_operations(1_001, Some("same"))), ImportError::DuplicateOperationIds { ref id, .. } if id == "same")
    );
    assert_eq!(import(&many_operations(OPERATIONS_MAX + 1, None)), ImportError::TooManyOperations);
}

#[test]
fn warnings_are_bounded() {
    let paths: serde_json::Map<String, Value> =
        (0..WARNINGS_MAX + 5).map(|index| (format!("/p{index}"), json!({"x-note": index}))).collect();
    let document = json!({"openapi": "3.0.0", "info": {"title": "t"}, "paths": paths});
    let api = import(&document.to_string(), &options()).unwrap();
    assert_eq!(api.warnings.len(), WARNINGS_MAX + 1);
    assert!(api.warnings.last().unwrap().message.starts_with("5 more"));
}

fn round_trip(text: &str, format: ExportFormat) -> (ImportedApi, ImportedApi) {
    let first = imported(text);
    let exported = export(&first.api, &first.operations, &first.schemas, GATEWAY, format);
    let second = import(&exported, &options()).unwrap_or_else(|error| panic!("{error}\n{exported}"));
    (first, second)
}

#[test]
fn export_then_import_gives_the_same_operations_and_schemas() {
    let cases = [
        (PETSTORE_30, ExportFormat::OpenApi3Json),
        (PETSTORE_30, ExportFormat::OpenApi3Yaml),
        (PETSTORE_31, ExportFormat::OpenApi3Yaml),
        (PETSTORE_2, ExportFormat::Swagger2Json),
    ];
    for (text, format) in cases {
        let (first, second) = round_trip(text, format);
        assert_eq!(first.operations, second.operations, "{format:?}");
        assert_eq!(first.schemas, second.schemas, "{format:?}");
        assert_eq!(first.api.display_name, second.api.display_name);
        assert_eq!(first.api.description, second.api.description);
        assert_eq!(second.api.service_url.as_deref(), Some("https://gateway.example.com/pets"), "{format:?}");
    }
    // Swagger to OpenAPI 3: the same operations; the schemas move to components.
    let (first, second) = round_trip(PETSTORE_2, ExportFormat::OpenApi3Json);
    assert_eq!(first.operations, second.operations);
    let schemas = &second.schemas[0].1.document["components"]["schemas"];
    assert_eq!(schemas["Pet"]["properties"]["category"]["$ref"], "#/components/schemas/Category");
}

#[test]
fn export_points_at_the_gateway_with_the_subscription_key() {
    let mut api = imported(PETSTORE_31);
    api.api.subscription_key_parameter_names =
        Some(crate::model::KeyParameterNames { header: Some("X-Key".into()), query: None });
    let document: Value = serde_json::from_str(&export(
        &api.api,
        &api.operations,
        &api.schemas,
        "https://gw:8443/",
        ExportFormat::OpenApi3Json,
    ))
    .unwrap();
    assert_eq!(document["servers"][0]["url"], "https://gw:8443/pets");
    assert_eq!(document["components"]["securitySchemes"]["apiKeyHeader"]["name"], "X-Key");
    assert_eq!(document["components"]["securitySchemes"]["apiKeyQuery"]["name"], "subscription-key");
    let list = &document["paths"]["/pets"]["get"];
    assert_eq!((list["operationId"].as_str(), list["summary"].as_str()), (Some("listpets"), Some("List all pets")));
    assert_eq!(list["parameters"][0]["in"], "query");
    let swagger: Value = serde_json::from_str(&export(
        &api.api,
        &api.operations,
        &api.schemas,
        "http://gw/",
        ExportFormat::Swagger2Json,
    ))
    .unwrap();
    assert_eq!((swagger["host"].as_str(), swagger["basePath"].as_str()), (Some("gw"), Some("/pets")));
    assert_eq!(swagger["schemes"], json!(["http"]));
    assert_eq!(swagger["securityDefinitions"]["apiKeyHeader"]["in"], "header");
    // No subscription: no security scheme.
    api.api.subscription_required = false;
    let open: Value =
        serde_json::from_str(&export(&api.api, &api.operations, &api.schemas, GATEWAY, ExportFormat::OpenApi3Json))
            .unwrap();
    assert!(open.get("security").is_none() && open["components"].get("securitySchemes").is_none());
}

#[test]
fn operations_that_differ_by_query_export_under_x_ms_paths_and_come_back() {
    let operation = |template: &str, name: &str| OperationProperties {
        display_name: name.into(),
        method: "GET".into(),
        url_template: template.into(),
        template_parameters: crate::openapi::tests::template_parameters(template),
        ..OperationProperties::default()
    };
    let operations = vec![
        ("by-name".to_owned(), operation("/pets?name={name}", "by name")),
        ("by-tag".to_owned(), operation("/pets?tag={tag}", "by tag")),
    ];
    let api = imported(PETSTORE_31).api;
    let text = export(&api, &operations, &[], GATEWAY, ExportFormat::OpenApi3Json);
    let document: Value = serde_json::from_str(&text).unwrap();
    assert!(document["x-ms-paths"]["/pets?tag={tag}"]["get"].is_object(), "{text}");
    let again = import(&text, &options()).unwrap();
    assert_eq!(again.operations, operations);
}

fn template_parameters(template: &str) -> Vec<crate::model::ParameterContract> {
    names::template_names(template)
        .into_iter()
        .map(|name| crate::model::ParameterContract {
            name: name.into(),
            parameter_type: "string".into(),
            required: true,
            ..Default::default()
        })
        .collect()
}

fn service_with(writes: Vec<Write>) -> Service {
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    let actor = Actor { name: "test".into(), action: "test".into() };
    service.write(writes, &[], Authority::Store, &actor).unwrap();
    service
}

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).unwrap()
}

#[test]
fn reimport_updates_matches_creates_new_ones_and_deletes_the_rest() {
    let policy = json!({"value": "<policies><inbound><base /></inbound></policies>", "format": "xml"});
    let other_policy = json!({"value": "<policies><inbound><mock-response /></inbound></policies>", "format": "xml"});
    let mut service = service_with(vec![
        put(
            path("/apis/pets"),
            json!({"path": "old", "displayName": "Old", "apiVersion": "v1", "serviceUrl": "http://keep"}),
        ),
        put(path("/apis/pets/operations/listpets"), json!({"method": "GET", "urlTemplate": "/old"})),
        put(path("/apis/pets/operations/listpets/policies/policy"), policy.clone()),
        put(path("/apis/pets/operations/old-show"), json!({"method": "GET", "urlTemplate": "/pets/{petId}"})),
        put(path("/apis/pets/operations/old-show/policies/policy"), other_policy.clone()),
        put(path("/apis/pets/operations/gone"), json!({"method": "DELETE", "urlTemplate": "/x"})),
        put(path("/apis/pets/schemas/stale"), json!({"contentType": "x", "document": {}})),
    ]);
    let api = import(PETSTORE_31, &ImportOptions::default()).unwrap();
    let writes = reimport_writes(service.state(), "pets", &api).unwrap();
    let actor = Actor { name: "test".into(), action: "import".into() };
    service.write(writes, &[], Authority::Store, &actor).unwrap();
    let state = service.state();
    let paths: Vec<_> = state.under("/apis/pets/").map(|r| r.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "/apis/pets/operations/createpets",
            "/apis/pets/operations/listpets",
            "/apis/pets/operations/listpets/policies/policy",
            "/apis/pets/operations/showpetbyid",
            "/apis/pets/operations/showpetbyid/policies/policy",
            "/apis/pets/schemas/openapi",
        ]
    );
    assert_eq!(state.get("/apis/pets/operations/listpets").unwrap().properties["urlTemplate"], "/pets?limit={limit}");
    assert_eq!(state.get("/apis/pets/operations/listpets/policies/policy").unwrap().properties, policy, "kept");
    // The new operation serves what the dropped one served: it takes its policy.
    assert_eq!(state.get("/apis/pets/operations/showpetbyid/policies/policy").unwrap().properties, other_policy);
    let api = &state.get("/apis/pets").unwrap().properties;
    assert_eq!((api["displayName"].as_str(), api["apiVersion"].as_str()), (Some("Petstore 3.1"), Some("v1")));
    assert_eq!(
        (api["path"].as_str(), api["serviceUrl"].as_str()),
        (Some("old"), Some("https://api.example.com/petstore"))
    );
}

#[test]
fn reimport_into_a_new_api_or_a_revision() {
    let state = State::default();
    let api = imported(PETSTORE_31);
    let writes = reimport_writes(&state, "pets;rev=2", &api).unwrap();
    let paths: Vec<_> = writes.iter().map(|w| w.path().to_string()).collect();
    assert_eq!(paths[0], "/apis/pets;rev=2");
    assert_eq!(paths.len(), 1 + 3 + 1);
    assert!(writes.iter().all(|w| matches!(w, Write::Put { .. })));
    assert!(reimport_writes(&state, "bad id", &api).is_err());
}

#[test]
fn schema_names_that_need_escaping_survive_a_round_trip() {
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "t"},
        "paths": {"/a": {"get": {"responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/a%20b~1c"}}
        }}}}}},
        "components": {"schemas": {"a b/c": {"type": "string"}}}
    });
    let first = import(&document.to_string(), &options()).unwrap();
    assert_eq!(first.operations[0].1.responses[0].representations[0].type_name.as_deref(), Some("a b/c"));
    let exported = export(&first.api, &first.operations, &first.schemas, GATEWAY, ExportFormat::OpenApi3Json);
    assert!(exported.contains("#/components/schemas/a%20b~1c"), "{exported}");
    assert_eq!(import(&exported, &options()).unwrap().operations, first.operations);
}
