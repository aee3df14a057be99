//! Checks a request's `properties` against the schema the OpenAPI document gives them, before
//! serde reads them: serde alone is laxer than the document (it reads a struct from a JSON array)
//! and the API fills some read-only properties in, which must not hide a wrongly typed value.
//!
//! It understands the subset of JSON Schema that schemars writes for OpenAPI 3.0: `$ref`, `type`
//! with `nullable`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `minimum`, `maximum`, `allOf`, `anyOf`, `oneOf`, and boolean schemas.

use serde_json::{Map, Value};

/// Deepest nesting checked (schemas of the model are a few levels deep; values may be deeper).
const DEPTH_MAX: usize = 64;

/// Whether `value` fits `schema`; the error names the first property that does not, e.g.
/// `properties.contact.email: expected a string`.
pub(crate) fn check(value: &Value, schema: &Value, components: &Map<String, Value>, at: &str) -> Result<(), String> {
    check_at(value, schema, components, at, 0)
}

fn check_at(
    value: &Value,
    schema: &Value,
    components: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), String> {
    if depth > DEPTH_MAX {
        return Err(format!("{at}: nested deeper than {DEPTH_MAX}"));
    }
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: not allowed")),
        Value::Object(schema) => schema,
        _ => return Ok(()),
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        let target = components.get(name).ok_or_else(|| format!("{at}: the schema {name} is missing"))?;
        return check_at(value, target, components, at, depth + 1);
    }
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    for sub in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        check_at(value, sub, components, at, depth + 1)?;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let mut first_error = None;
            let fits = options.iter().any(|sub| match check_at(value, sub, components, at, depth + 1) {
                Ok(()) => true,
                Err(error) => {
                    first_error.get_or_insert(error);
                    false
                }
            });
            if !fits {
                return Err(first_error.unwrap_or_else(|| format!("{at}: fits none of the allowed forms")));
            }
        }
    }
    check_type(value, schema, at)?;
    check_values(value, schema, at)?;
    match value {
        Value::Object(object) => check_object(object, schema, components, at, depth),
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => items.iter().enumerate().try_for_each(|(index, item)| {
                check_at(item, item_schema, components, &format!("{at}[{index}]"), depth + 1)
            }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_type(value: &Value, schema: &Map<String, Value>, at: &str) -> Result<(), String> {
    let Some(wanted) = schema.get("type").and_then(Value::as_str) else { return Ok(()) };
    let fits = match wanted {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "null" => value.is_null(),
        _ => true,
    };
    if fits { Ok(()) } else { Err(format!("{at}: expected {}", article(wanted))) }
}

fn article(kind: &str) -> String {
    match kind {
        "object" | "array" | "integer" => format!("an {kind}"),
        other => format!("a {other}"),
    }
}

fn check_values(value: &Value, schema: &Map<String, Value>, at: &str) -> Result<(), String> {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{at}: must be one of {}", names.join(", ")));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: must be {constant}"));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64).filter(|m| number < *m) {
            return Err(format!("{at}: must be at least {minimum}"));
        }
        if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64).filter(|m| number > *m) {
            return Err(format!("{at}: must be at most {maximum}"));
        }
    }
    Ok(())
}

fn check_object(
    object: &Map<String, Value>,
    schema: &Map<String, Value>,
    components: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), String> {
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !object.contains_key(name) {
            return Err(format!("{at}.{name}: missing"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, value) in object {
        let field = format!("{at}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(property) => check_at(value, property, components, &field, depth + 1)?,
            None => {
                if let Some(additional) = schema.get("additionalProperties") {
                    check_at(value, additional, components, &field, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_checked_against_the_schema_as_serde_would_not() {
        let components =
            json!({"Names": {"type": "object", "properties": {"header": {"type": "string", "nullable": true}}}});
        let components = components.as_object().unwrap();
        let schema = json!({
            "type": "object", "required": ["path"],
            "properties": {
                "path": {"type": "string"},
                "names": {"anyOf": [{"$ref": "#/components/schemas/Names"}, {"type": "null"}]},
                "limit": {"type": "integer", "minimum": 0, "maximum": 10},
                "state": {"type": "string", "enum": ["a", "b"]},
                "list": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": true,
        });
        let ok = json!({"path": "p", "names": {"header": null}, "limit": 3, "state": "a", "list": ["x"], "extra": {}});
        assert_eq!(check(&ok, &schema, components, "properties"), Ok(()));
        let cases = [
            (json!({}), "properties.path: missing"),
            (json!({"path": "p", "names": ["x"]}), "properties.names: expected an object"),
            (json!({"path": "p", "limit": 11}), "properties.limit: must be at most 10"),
            (json!({"path": "p", "limit": 1.5}), "properties.limit: expected an integer"),
            (json!({"path": "p", "state": "c"}), "properties.state: must be one of \"a\", \"b\""),
            (json!({"path": "p", "list": [1]}), "properties.list[0]: expected a string"),
        ];
        for (value, error) in cases {
            assert_eq!(check(&value, &schema, components, "properties"), Err(error.to_owned()), "{value}");
        }
    }
}
