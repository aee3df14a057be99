//! JSON tokens by reference: a shared document and a path into it, so mutations through any
//! reference (`obj["a"]["b"] = 1`, `obj.Property("x").Remove()`) change the one document.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value as Json;

use super::Value;
use crate::policy::error::Fault;

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(Rc<str>),
    Index(usize),
}

/// A token inside a shared JSON document.
#[derive(Debug, Clone)]
pub struct JsonRef {
    root: Rc<RefCell<Json>>,
    path: Rc<[Seg]>,
}

impl JsonRef {
    /// A new document.
    pub fn new(value: Json) -> Self {
        Self { root: Rc::new(RefCell::new(value)), path: Rc::from(Vec::new()) }
    }

    /// The token at `seg` below this one (it may not exist).
    pub fn child(&self, seg: Seg) -> Self {
        let mut path = self.path.to_vec();
        path.push(seg);
        Self { root: self.root.clone(), path: path.into() }
    }

    /// Reads the token (`None`: the path no longer leads anywhere).
    pub fn with<R>(&self, read: impl FnOnce(Option<&Json>) -> R) -> R {
        let root = self.root.borrow();
        read(resolve(&root, &self.path))
    }

    /// Changes the token.
    pub fn with_mut<R>(&self, write: impl FnOnce(Option<&mut Json>) -> R) -> R {
        let mut root = self.root.borrow_mut();
        write(resolve_mut(&mut root, &self.path))
    }

    /// A copy of the token (`Json::Null` when gone).
    pub fn get(&self) -> Json {
        self.with(|token| token.cloned().unwrap_or(Json::Null))
    }

    pub fn is_object(&self) -> bool {
        self.with(|token| matches!(token, Some(Json::Object(_))))
    }

    pub fn is_array(&self) -> bool {
        self.with(|token| matches!(token, Some(Json::Array(_))))
    }

    pub fn type_name(&self) -> &'static str {
        self.with(|token| match token {
            Some(Json::Object(_)) => "JObject",
            Some(Json::Array(_)) => "JArray",
            _ => "JValue",
        })
    }

    /// Same document, same token.
    pub fn same(&self, other: &JsonRef) -> bool {
        Rc::ptr_eq(&self.root, &other.root) && self.path == other.path
    }

    /// The parent token and the last step, if this is not the root.
    pub fn parent(&self) -> Option<(JsonRef, Seg)> {
        let (last, parent) = self.path.split_last()?;
        Some((Self { root: self.root.clone(), path: parent.to_vec().into() }, last.clone()))
    }

    /// `ToString()`: containers indented as Newtonsoft writes them, strings raw.
    pub fn write_display(&self, out: &mut String) {
        self.with(|token| match token {
            Some(Json::String(text)) => out.push_str(text),
            Some(Json::Null) | None => {}
            Some(token) => write_indented(token, out),
        });
    }

    /// `JProperty.ToString()`: `"name": value`.
    pub fn write_property(&self, name: &str, out: &mut String) {
        out.push_str(&Json::String(name.to_owned()).to_string());
        out.push_str(": ");
        self.with(|token| {
            let value = match token {
                Some(Json::Object(map)) => map.get(name),
                _ => None,
            };
            write_indented(value.unwrap_or(&Json::Null), out);
        });
    }

    /// The element at `seg` as a VM value: containers by reference, primitives by value
    /// (Newtonsoft's indexer returns null for a missing key).
    pub fn index<'a>(&self, seg: Seg) -> Value<'a> {
        let child = self.child(seg);
        let primitive = child.with(|token| match token {
            None => Some(Value::Null),
            Some(Json::Object(_) | Json::Array(_)) => None,
            Some(primitive) => Some(from_primitive(primitive)),
        });
        primitive.unwrap_or(Value::Json(child))
    }
}

/// `token` written as Newtonsoft's `Formatting.Indented` does (two spaces).
pub(crate) fn write_indented(token: &Json, out: &mut String) {
    out.push_str(&serde_json::to_string_pretty(token).unwrap_or_default());
}

/// A JSON primitive as a VM value (containers become null: use [`JsonRef::index`]).
pub(crate) fn from_primitive<'a>(token: &Json) -> Value<'a> {
    match token {
        Json::Bool(value) => Value::Bool(*value),
        Json::Number(number) => match number.as_i64() {
            Some(value) => Value::Int(value),
            None => Value::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Value::string(text.clone()),
        Json::Null | Json::Object(_) | Json::Array(_) => Value::Null,
    }
}

/// A VM value as JSON (`JToken.FromObject`, `obj[k] = v`, `JsonConvert.SerializeObject`).
pub(crate) fn to_json(value: &Value<'_>) -> Result<Json, Fault> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(value) => Json::Bool(*value),
        Value::Int(value) => Json::from(*value),
        Value::Double(value) => serde_json::Number::from_f64(*value).map_or(Json::Null, Json::Number),
        Value::Str(text) => Json::String(text.as_str().to_owned()),
        Value::Json(json) => json.get(),
        Value::JProperty(property) => {
            let mut map = serde_json::Map::new();
            let value = property.0.with(|token| match token {
                Some(Json::Object(object)) => object.get(&*property.1).cloned(),
                _ => None,
            });
            map.insert(property.1.to_string(), value.unwrap_or(Json::Null));
            Json::Object(map)
        }
        Value::Array(items) => Json::Array(items.borrow().iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Dict(entries) => Json::Object(
            entries
                .borrow()
                .iter()
                .map(|(key, value)| Ok((key.to_string(), to_json(value)?)))
                .collect::<Result<_, Fault>>()?,
        ),
        Value::Jwt(jwt) | Value::Claims(jwt) => Json::Object(jwt.claims.clone()),
        Value::Bytes(bytes) => {
            use base64::Engine as _;
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        other @ (Value::DateTime(_) | Value::TimeSpan(_) | Value::Guid(_)) => {
            let mut text = String::new();
            if let Value::DateTime(date) = other {
                text.push_str(&date.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
            } else {
                other.write_display(&mut text);
            }
            Json::String(text)
        }
        other => {
            return Err(Fault::eval(format!(
                "Expression evaluation failed. Cannot convert {} to JSON.",
                other.type_name()
            )));
        }
    })
}

fn resolve<'j>(mut token: &'j Json, path: &[Seg]) -> Option<&'j Json> {
    for seg in path {
        token = match (token, seg) {
            (Json::Object(map), Seg::Key(key)) => map.get(&**key)?,
            (Json::Array(items), Seg::Index(index)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(token)
}

fn resolve_mut<'j>(mut token: &'j mut Json, path: &[Seg]) -> Option<&'j mut Json> {
    for seg in path {
        token = match (token, seg) {
            (Json::Object(map), Seg::Key(key)) => map.get_mut(&**key)?,
            (Json::Array(items), Seg::Index(index)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(token)
}
