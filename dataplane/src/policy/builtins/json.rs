//! Newtonsoft.Json: `JObject`/`JArray`/`JToken` parsing, indexing helpers, mutation and printing.

use std::rc::Rc;

use portcullis_contract::program::{Builtin, ValueType};
use serde_json::Value as Json;

use super::Args;
use crate::policy::error::Fault;
use crate::policy::value::json::{from_primitive, to_json};
use crate::policy::value::{JsonRef, Seg, Value};

/// Largest JSON text parsed by one call: bounds memory per expression.
pub(crate) const JSON_PARSE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A parsed token as a value (containers by reference into a new document).
pub(crate) fn token_value<'a>(token: Json) -> Value<'a> {
    match token {
        Json::Object(_) | Json::Array(_) => Value::Json(JsonRef::new(token)),
        primitive => from_primitive(&primitive),
    }
}

pub(crate) fn parse(a: &Args<'_, '_>, text: &str) -> Result<Json, Fault> {
    if text.len() > JSON_PARSE_BYTES_MAX {
        return Err(a.fail("JSON text too large"));
    }
    serde_json::from_str(text).map_err(|error| a.fail(&format!("Error reading JToken from JsonReader. {error}")))
}

fn json_ref<'r>(a: &'r Args<'_, '_>, at: usize) -> Result<&'r JsonRef, Fault> {
    match a.get(at)? {
        Value::Json(json) => Ok(json),
        Value::Null => {
            Err(Fault::eval("Expression evaluation failed. Object reference not set to an instance of an object."))
        }
        other => Err(a.fail(&format!("expected a JToken, found {}", other.type_name()))),
    }
}

fn convert<'a>(a: &Args<'_, 'a>, value: Value<'a>, ty: ValueType) -> Result<Value<'a>, Fault> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match (ty, &value) {
        (ValueType::String, Value::Str(_)) => value,
        (ValueType::String, _) => {
            let mut out = String::new();
            if let Value::Json(json) = &value {
                out.push_str(&serde_json::to_string(&json.get()).unwrap_or_default());
            } else {
                value.write_display(&mut out);
            }
            Value::string(out)
        }
        (ValueType::Int, Value::Str(text)) => {
            Value::Int(text.as_str().trim().parse().map_err(|_| a.fail("Could not convert string to integer."))?)
        }
        (ValueType::Double, Value::Str(text)) => {
            Value::Double(text.as_str().trim().parse().map_err(|_| a.fail("Could not convert string to double."))?)
        }
        (ValueType::Bool, Value::Str(text)) => Value::Bool(text.as_str().trim().eq_ignore_ascii_case("true")),
        _ => value.cast(ty)?,
    })
}

pub(super) fn call<'a>(mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    match b {
        B::JObjectParse | B::JArrayParse | B::JTokenParse | B::JsonDeserialize => {
            a.arity(&[1, 2])?;
            let token = parse(&a, a.text(0)?)?;
            match (b, &token) {
                (B::JObjectParse, Json::Object(_)) | (B::JArrayParse, Json::Array(_)) => {}
                (B::JObjectParse, _) => return Err(a.fail("Error reading JObject from JsonReader.")),
                (B::JArrayParse, _) => return Err(a.fail("Error reading JArray from JsonReader.")),
                _ => {}
            }
            Ok(token_value(token))
        }
        B::JTokenFromObject | B::JValueNew => {
            a.arity(&[1])?;
            Ok(token_value(to_json(a.get(0)?)?))
        }
        B::JsonSerialize | B::JToStringCompact => {
            a.arity(&[1, 2])?;
            Ok(Value::string(serde_json::to_string(&to_json(a.get(0)?)?).unwrap_or_default()))
        }
        B::JValueOf => {
            a.arity(&[3])?;
            let ty = a.value_type(2)?;
            let json = json_ref(&a, 0)?;
            let value = match a.get(1)? {
                Value::Str(key) => json.index(Seg::Key(Rc::from(key.as_str()))),
                Value::Int(i) => json.index(Seg::Index(usize::try_from(*i).map_err(|_| a.fail("index out of range"))?)),
                _ => return Err(a.fail("expected a key")),
            };
            convert(&a, value, ty)
        }
        B::JToObject => {
            a.arity(&[2])?;
            let ty = a.value_type(1)?;
            let value = a.take(0)?;
            convert(&a, value, ty)
        }
        B::JObjectProperty => {
            a.arity(&[2])?;
            let json = json_ref(&a, 0)?;
            let name = a.text(1)?;
            let exists = json.with(|token| matches!(token, Some(Json::Object(map)) if map.contains_key(name)));
            Ok(if exists { Value::JProperty(Rc::new((json.clone(), Rc::from(name)))) } else { Value::Null })
        }
        B::JTokenRemove => {
            a.arity(&[1])?;
            match a.receiver()? {
                Value::JProperty(property) => {
                    property.0.with_mut(|token| {
                        if let Some(Json::Object(map)) = token {
                            map.remove(&*property.1);
                        }
                    });
                }
                Value::Json(json) => {
                    if let Some((parent, seg)) = json.parent() {
                        parent.with_mut(|token| match (token, seg) {
                            (Some(Json::Object(map)), Seg::Key(key)) => {
                                map.remove(&*key);
                            }
                            (Some(Json::Array(items)), Seg::Index(at)) if at < items.len() => {
                                items.remove(at);
                            }
                            _ => {}
                        });
                    }
                }
                other => return Err(a.fail(&format!("Remove is not defined on {}", other.type_name()))),
            }
            Ok(Value::Null)
        }
        B::JObjectRemove => {
            a.arity(&[2])?;
            let json = json_ref(&a, 0)?;
            let name = a.text(1)?;
            Ok(Value::Bool(json.with_mut(|token| match token {
                Some(Json::Object(map)) => map.remove(name).is_some(),
                _ => false,
            })))
        }
        B::JAdd | B::JSet => {
            a.arity(&[2, 3])?;
            let json = json_ref(&a, 0)?.clone();
            if a.len() == 2 {
                // `obj.Add(new JProperty(name, value))` (also how `new JObject(props...)` is built).
                if let Value::JProperty(property) = a.get(1)? {
                    let name = property.1.clone();
                    let value = property.0.with(|holder| holder.and_then(|h| h.get(&*name)).cloned());
                    let added = json.with_mut(|token| match token {
                        Some(Json::Object(map)) if !map.contains_key(&*name) => {
                            map.insert(name.to_string(), value.unwrap_or(Json::Null));
                            Ok(())
                        }
                        Some(Json::Object(_)) => {
                            Err("Can not add property: a property with the same name already exists on object.")
                        }
                        _ => Err("Add(JProperty) needs a JObject"),
                    });
                    return added.map(|()| Value::Null).map_err(|what| a.fail(what));
                }
                let value = to_json(a.get(1)?)?;
                let added = json.with_mut(|token| match token {
                    Some(Json::Array(items)) => {
                        items.push(value);
                        true
                    }
                    _ => false,
                });
                return if added { Ok(Value::Null) } else { Err(a.fail("Add(value) needs a JArray")) };
            }
            let value = to_json(a.get(2)?)?;
            let key = a.get(1)?.clone();
            let outcome = json.with_mut(|token| match (token, &key) {
                (Some(Json::Object(map)), Value::Str(name)) => {
                    if b == B::JAdd && map.contains_key(name.as_str()) {
                        Err("Can not add property {name} to Newtonsoft.Json.Linq.JObject. Property with the same name already exists on object.")
                    } else {
                        map.insert(name.as_str().to_owned(), value);
                        Ok(())
                    }
                }
                (Some(Json::Array(items)), Value::Int(at)) => match usize::try_from(*at).ok().and_then(|at| items.get_mut(at)) {
                    Some(slot) => {
                        *slot = value;
                        Ok(())
                    }
                    None => Err("Index was out of range."),
                },
                _ => Err("cannot set this key on this token"),
            });
            outcome.map(|()| Value::Null).map_err(|what| a.fail(what))
        }
        B::JContainsKey => {
            a.arity(&[2])?;
            let json = json_ref(&a, 0)?;
            let name = a.text(1)?;
            Ok(Value::Bool(json.with(|token| matches!(token, Some(Json::Object(map)) if map.contains_key(name)))))
        }
        B::JObjectProperties => {
            a.arity(&[1])?;
            let json = json_ref(&a, 0)?;
            let keys: Vec<Rc<str>> = json.with(|token| match token {
                Some(Json::Object(map)) => map.keys().map(|k| Rc::from(k.as_str())).collect(),
                _ => Vec::new(),
            });
            Ok(Value::array(keys.into_iter().map(|key| Value::JProperty(Rc::new((json.clone(), key)))).collect()))
        }
        B::JSelectToken => {
            a.arity(&[2])?;
            let json = json_ref(&a, 0)?;
            select_token(json, a.text(1)?).ok_or_else(|| a.fail("Unsupported JSONPath"))
        }
        B::JObjectNew => Ok(Value::Json(JsonRef::new(Json::Object(serde_json::Map::new())))),
        B::JArrayNew => {
            let items = match a.values.first() {
                Some(Value::Array(items)) => items.borrow().iter().map(to_json).collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            Ok(Value::Json(JsonRef::new(Json::Array(items))))
        }
        B::JPropertyNew => {
            a.arity(&[2])?;
            let name = a.text(0)?.to_owned();
            let mut map = serde_json::Map::new();
            map.insert(name.clone(), to_json(a.get(1)?)?);
            Ok(Value::JProperty(Rc::new((JsonRef::new(Json::Object(map)), Rc::from(name.as_str())))))
        }
        _ => Err(a.fail("not a JSON method")),
    }
}

/// `SelectToken` for dotted paths with `[n]` and `['key']` steps (`$.a.b[0]`); `None` for
/// JSONPath features beyond that (filters, wildcards).
fn select_token<'a>(json: &JsonRef, path: &str) -> Option<Value<'a>> {
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut current = Value::Json(json.clone());
    let mut rest = path;
    while !rest.is_empty() {
        let Value::Json(node) = &current else { return Some(Value::Null) };
        let (seg, next) = if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            (Seg::Key(Rc::from(&after[..end])), &after[end..])
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            let seg = match inner.trim_matches(|c| c == '\'' || c == '"') {
                key if inner.starts_with(['\'', '"']) => Seg::Key(Rc::from(key)),
                index => Seg::Index(index.parse().ok()?),
            };
            (seg, &after[end + 1..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (Seg::Key(Rc::from(&rest[..end])), &rest[end..])
        };
        if matches!(&seg, Seg::Key(key) if key.contains('*') || key.contains('?')) {
            return None;
        }
        current = node.index(seg);
        rest = next;
    }
    Some(current)
}
