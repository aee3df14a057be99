//! Dictionaries (headers, query, matched parameters, variables, JWT claims, `Dictionary`) and
//! sequences (LINQ without lambdas, `List.Add`).

use std::cell::RefCell;
use std::rc::Rc;

use portcullis_contract::program::Builtin;

use super::Args;
use crate::policy::error::Fault;
use crate::policy::value::{Handle, Text, Value, value_type_name};
use crate::policy::vm::Machine;
use crate::policy::vm::members::claim_values;

/// `dict[name]` if present (`None` when absent), for the dictionaries policies read.
fn lookup<'a>(m: &Machine<'_, 'a>, a: &Args<'_, 'a>, dict: &Value<'a>, name: &str) -> Result<Option<Value<'a>>, Fault> {
    Ok(match dict {
        Value::Handle(Handle::Headers(message)) => m.header_value(*message, name).map(Value::Str),
        Value::Handle(Handle::Query(kind)) => m.query_value(*kind, name).map(Value::Str),
        Value::Handle(Handle::MatchedParameters) => m.matched(name).map(Value::str),
        Value::Handle(Handle::Variables) => m.variable(name),
        Value::ResponseHeaders(response) => response.header(name).map(Value::string),
        Value::Claims(jwt) => claim_values(jwt, name).map(|values| Value::string(values.join(","))),
        Value::Dict(entries) => entries.borrow().iter().find(|(key, _)| **key == *name).map(|(_, value)| value.clone()),
        Value::Json(json) if json.is_object() => {
            let value = json.index(crate::policy::value::Seg::Key(Rc::from(name)));
            (!value.is_null()).then_some(value)
        }
        Value::Null => {
            return Err(Fault::eval(
                "Expression evaluation failed. Object reference not set to an instance of an object.",
            ));
        }
        other => return Err(a.fail(&format!("{} is not a dictionary", other.type_name()))),
    })
}

fn keys<'a>(m: &Machine<'_, 'a>, a: &Args<'_, 'a>, dict: Value<'a>, values: bool) -> Result<Value<'a>, Fault> {
    let pairs = m.elements(dict)?;
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match pair {
            Value::Pair(pair) => out.push(if values { pair.1.clone() } else { pair.0.clone() }),
            _ => return Err(a.fail("not a dictionary")),
        }
    }
    Ok(Value::array(out))
}

pub(super) fn sort_key_cmp(a: &Value<'_>, b: &Value<'_>) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.as_str().cmp(y.as_str()),
        _ => a.compare(b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

pub(super) fn call<'a>(m: &mut Machine<'_, 'a>, mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    match b {
        B::GetValueOrDefault | B::GetValueOrDefaultWith => {
            a.arity(if b == B::GetValueOrDefault { &[2] } else { &[3] })?;
            let name = a.text_value(1)?;
            let found = lookup(m, &a, a.get(0)?, name.as_str())?;
            match found {
                Some(value) => Ok(value),
                None if b == B::GetValueOrDefaultWith => a.take(2),
                None => Ok(Value::Null),
            }
        }
        B::GetValueOrDefaultTyped => {
            a.arity(&[4])?;
            let ty = a.value_type(3)?;
            let name = a.text_value(1)?;
            match lookup(m, &a, a.get(0)?, name.as_str())? {
                Some(value) if value.is_type(ty) || value.is_null() => Ok(value),
                Some(value) => Err(a.fail(&format!(
                    "Unable to cast object of type '{}' to type '{}'.",
                    value.type_name(),
                    value_type_name(ty)
                ))),
                None => a.take(2),
            }
        }
        B::ContainsKey => {
            a.arity(&[2])?;
            let name = a.text_value(1)?;
            Ok(Value::Bool(lookup(m, &a, a.get(0)?, name.as_str())?.is_some()))
        }
        B::DictKeys | B::DictValues => {
            a.arity(&[1])?;
            let dict = a.take(0)?;
            keys(m, &a, dict, b == B::DictValues)
        }
        B::ListNew => Ok(Value::array(Vec::new())),
        B::DictionaryNew => Ok(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
        B::ListAdd => {
            a.arity(&[2])?;
            let value = a.take(1)?;
            match a.receiver()? {
                Value::Array(items) => {
                    items.borrow_mut().push(value);
                    Ok(Value::Null)
                }
                other => Err(a.fail(&format!("Add is not defined on {}", other.type_name()))),
            }
        }
        B::ListClear | B::ListRemove | B::ListRemoveAt | B::ListInsert | B::ListAddRange => list(m, a),
        _ => sequence(m, a),
    }
}

/// `List<T>` mutators: the list is shared (`Rc<RefCell<..>>`), so every alias sees the change.
fn list<'a>(m: &mut Machine<'_, 'a>, mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    a.arity(match b {
        B::ListClear => &[1],
        B::ListInsert => &[3],
        _ => &[2],
    })?;
    // Items to add are taken (and a sequence enumerated) before the list is borrowed.
    let added = match b {
        B::ListAddRange => Some(m.elements(a.take(1)?)?),
        B::ListInsert => Some(vec![a.take(2)?]),
        _ => None,
    };
    let Value::Array(items) = a.receiver()? else {
        return Err(a.fail(&format!("not defined on {}", a.get(0)?.type_name())));
    };
    let mut items = items.borrow_mut();
    let out_of_range =
        || a.fail("Index was out of range. Must be non-negative and less than the size of the collection.");
    match b {
        B::ListClear => items.clear(),
        B::ListRemove => {
            let found = items.iter().position(|item| item.equals(a.get(1).unwrap_or(&Value::Null)));
            if let Some(at) = found {
                items.remove(at);
            }
            return Ok(Value::Bool(found.is_some()));
        }
        B::ListRemoveAt => {
            let at = a.int(1)?;
            let at = usize::try_from(at).ok().filter(|at| *at < items.len()).ok_or_else(out_of_range)?;
            items.remove(at);
        }
        B::ListInsert => {
            let at = a.int(1)?;
            let at = usize::try_from(at).ok().filter(|at| *at <= items.len()).ok_or_else(out_of_range)?;
            items.splice(at..at, added.unwrap_or_default());
        }
        _ => items.extend(added.unwrap_or_default()),
    }
    Ok(Value::Null)
}

fn sequence<'a>(m: &mut Machine<'_, 'a>, mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    let source = a.take(0)?;
    let mut items = m.elements(source)?;
    let empty = || a.fail("Sequence contains no elements");
    Ok(match b {
        B::SeqContains => {
            a.arity(&[2])?;
            let needle = a.get(1)?;
            Value::Bool(items.iter().any(|item| item.equals(needle)))
        }
        B::SeqCount => Value::Int(items.len() as i64),
        B::SeqIndexOf => {
            a.arity(&[2])?;
            let needle = a.get(1)?;
            Value::Int(items.iter().position(|item| item.equals(needle)).map_or(-1, |at| at as i64))
        }
        B::SeqElementAtOrDefault => {
            a.arity(&[3])?;
            let at = a.int(1)?;
            match usize::try_from(at).ok().filter(|at| *at < items.len()) {
                Some(at) => items.swap_remove(at),
                None => a.take(2)?,
            }
        }
        B::SeqDefaultIfEmpty => {
            a.arity(&[2])?;
            if items.is_empty() {
                items.push(a.take(1)?);
            }
            Value::array(items)
        }
        B::SeqAny => Value::Bool(!items.is_empty()),
        B::SeqFirst => items.into_iter().next().ok_or_else(empty)?,
        B::SeqFirstOrDefault => items.into_iter().next().unwrap_or_default(),
        B::SeqLast => items.pop().ok_or_else(empty)?,
        B::SeqLastOrDefault => items.pop().unwrap_or_default(),
        B::SeqToArray | B::SeqToList => Value::array(items),
        B::SeqReverse => {
            items.reverse();
            Value::array(items)
        }
        B::SeqDistinct => {
            let mut distinct: Vec<Value<'a>> = Vec::with_capacity(items.len());
            for item in items {
                if !distinct.iter().any(|seen| seen.equals(&item)) {
                    distinct.push(item);
                }
            }
            Value::array(distinct)
        }
        B::SeqSkip | B::SeqTake => {
            a.arity(&[2])?;
            let count = a.int(1)?.max(0) as usize;
            let count = count.min(items.len());
            if b == B::SeqSkip {
                Value::array(items.split_off(count))
            } else {
                Value::array(items.into_iter().take(count).collect())
            }
        }
        B::SeqOrder => {
            items.sort_by(sort_key_cmp);
            Value::array(items)
        }
        B::SeqSum => {
            let mut int_sum: Option<i64> = Some(0);
            let mut sum = 0.0;
            for item in &items {
                match item {
                    Value::Int(v) => int_sum = int_sum.and_then(|s| s.checked_add(*v)),
                    Value::Double(_) => int_sum = None,
                    _ => return Err(a.fail("Sum needs numbers")),
                }
                sum += item.as_f64().unwrap_or(0.0);
            }
            match int_sum {
                Some(total) if items.iter().all(|i| matches!(i, Value::Int(_))) => Value::Int(total),
                _ => Value::Double(sum),
            }
        }
        _ => return Err(a.fail("not a sequence method")),
    })
    .map(|value| match value {
        Value::Str(Text::Shared(text)) => Value::Str(Text::Shared(text)),
        other => other,
    })
}
