//! OpenAPI import (`portcullis_management::openapi::import`) of a generated 1,000-operation
//! definition, as JSON and as YAML, and its export: what `PUT /apis/{id}` with an inline
//! definition costs the management plane (target: well under 2 s for 1,000 operations).

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_management::openapi::{self, ExportFormat, ImportOptions};
use serde_json::{Map, Value, json};

/// Operations in the generated definition: 250 paths with four methods each.
const OPERATIONS: usize = 1_000;
const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// A definition shaped like a real one: path and query parameters, a request body and two
/// responses per operation, all referencing 50 shared schemas.
fn definition() -> Value {
    let mut paths = Map::new();
    for index in 0..OPERATIONS / METHODS.len() {
        let mut item = Map::new();
        for method in METHODS {
            let schema = json!({ "$ref": format!("#/components/schemas/Item{}", index % 50) });
            let mut operation = json!({
                "operationId": format!("{method}Resource{index}"),
                "summary": format!("{method} resource {index}"),
                "parameters": [
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } },
                    { "name": "limit", "in": "query", "required": true, "schema": { "type": "integer", "default": 10 } },
                    { "name": "filter", "in": "query", "schema": { "type": "string", "enum": ["a", "b"] } },
                ],
                "responses": {
                    "200": { "description": "ok", "content": { "application/json": { "schema": schema, "example": { "id": 1 } } } },
                    "404": { "description": "not found" },
                },
            });
            if method != "get" && method != "delete" {
                operation["requestBody"] = json!({ "content": { "application/json": { "schema": schema } } });
            }
            item.insert(method.to_owned(), operation);
        }
        paths.insert(format!("/resources{index}/{{id}}"), Value::Object(item));
    }
    let schemas: Map<String, Value> = (0..50)
        .map(|index| {
            let schema = json!({ "type": "object", "properties": { "id": { "type": "integer" }, "name": { "type": "string" } } });
            (format!("Item{index}"), schema)
        })
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Generated", "version": "1" },
        "servers": [{ "url": "https://backend.example.com" }],
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn bench(c: &mut Criterion) {
    let value = definition();
    let json_text = serde_json::to_string(&value).expect("serialises");
    let yaml_text = serde_yaml_ng::to_string(&value).expect("serialises");
    let options = ImportOptions { path: "generated".into(), ..ImportOptions::default() };
    let imported = openapi::import(&json_text, &options).expect("imports");
    assert_eq!(imported.operations.len(), OPERATIONS);
    let mut group = c.benchmark_group("openapi");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    group
        .bench_function("import_1000_operations_json", |b| b.iter(|| openapi::import(black_box(&json_text), &options)));
    group
        .bench_function("import_1000_operations_yaml", |b| b.iter(|| openapi::import(black_box(&yaml_text), &options)));
    group.bench_function("export_1000_operations_json", |b| {
        b.iter(|| {
            let api = black_box(&imported);
            openapi::export(&api.api, &api.operations, &api.schemas, "https://gw", ExportFormat::OpenApi3Json)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
