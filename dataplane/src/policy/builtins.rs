//! Library functions and methods (`Builtin`), with .NET semantics. Any runtime type mismatch
//! or exception becomes `ExpressionValueEvaluationFailure` with a message naming the builtin.

mod collections;
mod context;
mod convert;
mod crypto;
mod json;
mod more;
mod regex;
mod string;
pub(crate) mod time;

use portcullis_contract::program::{Builtin, ValueType};

use crate::policy::error::Fault;
use crate::policy::value::{Text, Value};
use crate::policy::vm::Machine;

/// Runs `builtin` on `args` (receiver first for instance methods).
pub(crate) fn call<'a>(m: &mut Machine<'_, 'a>, builtin: Builtin, args: &mut [Value<'a>]) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let a = Args { builtin, values: args };
    match builtin {
        B::ToString | B::ToStringFormat | B::Equals | B::EqualsComparison | B::IsType => object(a),
        B::StrContains
        | B::StrStartsWith
        | B::StrEndsWith
        | B::StrStartsWithComparison
        | B::StrEndsWithComparison
        | B::StrContainsComparison
        | B::StrIndexOf
        | B::StrLastIndexOf
        | B::StrReplace
        | B::StrSplit
        | B::StrSplitOptions
        | B::StrSubstring
        | B::StrSubstringLength
        | B::StrToLower
        | B::StrToUpper
        | B::StrTrim
        | B::StrTrimChars
        | B::StrTrimStart
        | B::StrTrimEnd
        | B::StrPadLeft
        | B::StrPadRight
        | B::StrInsert
        | B::StrRemove
        | B::StrIsNullOrEmpty
        | B::StrIsNullOrWhiteSpace
        | B::StrJoin
        | B::StrFormat
        | B::StrConcat
        | B::StrCompare
        | B::StrCompareComparison
        | B::StrToCharArray => string::call(a),
        B::IntParse
        | B::IntTryParse
        | B::DoubleParse
        | B::BoolParse
        | B::ConvertToInt32
        | B::ConvertToDouble
        | B::ConvertToBoolean
        | B::ConvertToString
        | B::ConvertToBase64String
        | B::ConvertFromBase64String
        | B::MathMin
        | B::MathMax
        | B::MathAbs
        | B::MathRound
        | B::MathFloor
        | B::MathCeiling
        | B::Utf8GetBytes
        | B::Utf8GetString
        | B::WebUtilityUrlEncode
        | B::WebUtilityUrlDecode
        | B::WebUtilityHtmlEncode
        | B::WebUtilityHtmlDecode
        | B::UriEscapeDataString
        | B::UriUnescapeDataString
        | B::BitConverterToString
        | B::BitConverterToInt32
        | B::BytesFromArray => convert::call(a),
        B::BitAnd | B::BitOr | B::BitXor | B::BitNot | B::ShiftLeft | B::ShiftRight | B::IntNarrow => convert::bits(a),
        B::Sha256Hash
        | B::Sha1Hash
        | B::Md5Hash
        | B::Sha512Hash
        | B::HmacSha256
        | B::HmacSha1
        | B::HmacSha512
        | B::BytesEncrypt
        | B::BytesDecrypt => crypto::call(a),
        B::RegexIsMatch | B::RegexMatch | B::RegexMatches | B::RegexReplace | B::RegexSplit | B::RegexEscape => {
            regex::call(a)
        }
        B::DateTimeUtcNow
        | B::DateTimeNow
        | B::DateTimeParse
        | B::DateTimeAddSeconds
        | B::DateTimeAddMinutes
        | B::DateTimeAddHours
        | B::DateTimeAddDays
        | B::DateTimeAddMilliseconds
        | B::DateTimeSubtract
        | B::TimeSpanFromSeconds
        | B::TimeSpanFromMilliseconds
        | B::TimeSpanFromMinutes
        | B::TimeSpanFromHours
        | B::TimeSpanFromDays
        | B::GuidNewGuid
        | B::GuidParse => time::call(m, a),
        B::GetValueOrDefault
        | B::GetValueOrDefaultWith
        | B::GetValueOrDefaultTyped
        | B::ContainsKey
        | B::DictKeys
        | B::DictValues
        | B::SeqContains
        | B::SeqCount
        | B::SeqFirst
        | B::SeqFirstOrDefault
        | B::SeqLast
        | B::SeqLastOrDefault
        | B::SeqToArray
        | B::SeqToList
        | B::SeqDistinct
        | B::SeqReverse
        | B::SeqSkip
        | B::SeqTake
        | B::SeqOrder
        | B::SeqAny
        | B::SeqSum
        | B::ListAdd
        | B::ListClear
        | B::ListRemove
        | B::ListRemoveAt
        | B::ListInsert
        | B::ListAddRange
        | B::SeqIndexOf
        | B::SeqElementAtOrDefault
        | B::SeqDefaultIfEmpty
        | B::ListNew
        | B::DictionaryNew => collections::call(m, a),
        B::JObjectParse
        | B::JArrayParse
        | B::JTokenParse
        | B::JTokenFromObject
        | B::JsonSerialize
        | B::JsonDeserialize
        | B::JValueOf
        | B::JToObject
        | B::JObjectProperty
        | B::JTokenRemove
        | B::JObjectRemove
        | B::JAdd
        | B::JSet
        | B::JContainsKey
        | B::JObjectProperties
        | B::JSelectToken
        | B::JToStringCompact
        | B::JObjectNew
        | B::JArrayNew
        | B::JPropertyNew
        | B::JValueNew => json::call(a),
        B::BodyAs | B::BodyAsForm | B::AsJwt | B::AsBasic | B::ContextTrace | B::VariablesSet => context::call(m, a),
        B::CertificateVerify | B::CertificateVerifyNoRevocation => context::verify_certificate(m, a),
        B::DateTimeNew
        | B::GuidToByteArray
        | B::StrSplitCount
        | B::SeqSingle
        | B::SeqSingleOrDefault
        | B::SeqMin
        | B::SeqMax
        | B::SeqAverage
        | B::JTokenType
        | B::JTokenHasValues
        | B::UriNew
        | B::UriPart
        | B::RandomNext
        | B::RandomNextDouble
        | B::ArrayNew
        | B::ElementSet
        | B::BuilderAppend
        | B::SeqOrderByKeys
        | B::GuidHashCode => more::call(m, a),
    }
}

/// A builtin's arguments, with typed accessors that fail naming the builtin.
pub(crate) struct Args<'x, 'a> {
    pub(crate) builtin: Builtin,
    pub(crate) values: &'x mut [Value<'a>],
}

impl<'x, 'a> Args<'x, 'a> {
    pub(crate) fn fail(&self, what: &str) -> Fault {
        Fault::builtin(&format!("{:?}", self.builtin), what)
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Checks the argument count is one of `counts`.
    pub(crate) fn arity(&self, counts: &[usize]) -> Result<(), Fault> {
        if counts.contains(&self.values.len()) {
            Ok(())
        } else {
            Err(self.fail(&format!("takes {counts:?} arguments, got {}", self.values.len())))
        }
    }

    pub(crate) fn get(&self, at: usize) -> Result<&Value<'a>, Fault> {
        self.values.get(at).ok_or_else(|| self.fail(&format!("missing argument {at}")))
    }

    pub(crate) fn take(&mut self, at: usize) -> Result<Value<'a>, Fault> {
        let fault = self.fail(&format!("missing argument {at}"));
        self.values.get_mut(at).map(std::mem::take).ok_or(fault)
    }

    /// A string argument (null fails: `ArgumentNullException` / `NullReferenceException`).
    pub(crate) fn text(&self, at: usize) -> Result<&str, Fault> {
        match self.get(at)? {
            Value::Str(text) => Ok(text.as_str()),
            Value::Null => Err(self.fail("Value cannot be null.")),
            other => Err(self.fail(&format!("expected a String, found {}", other.type_name()))),
        }
    }

    /// A string argument as the value it is (to keep borrows borrowed).
    pub(crate) fn text_value(&self, at: usize) -> Result<Text<'a>, Fault> {
        match self.get(at)? {
            Value::Str(text) => Ok(text.clone()),
            Value::Null => Err(self.fail("Value cannot be null.")),
            other => Err(self.fail(&format!("expected a String, found {}", other.type_name()))),
        }
    }

    pub(crate) fn opt_text(&self, at: usize) -> Result<Option<&str>, Fault> {
        match self.get(at)? {
            Value::Null => Ok(None),
            _ => self.text(at).map(Some),
        }
    }

    pub(crate) fn int(&self, at: usize) -> Result<i64, Fault> {
        match *self.get(at)? {
            Value::Int(value) => Ok(value),
            Value::Double(value) if value.fract() == 0.0 && value.abs() < 9.0e15 => Ok(value as i64),
            ref other => Err(self.fail(&format!("expected an Int32, found {}", other.type_name()))),
        }
    }

    pub(crate) fn index(&self, at: usize) -> Result<usize, Fault> {
        usize::try_from(self.int(at)?).map_err(|_| self.fail("Index was out of range. Must be non-negative."))
    }

    pub(crate) fn number(&self, at: usize) -> Result<f64, Fault> {
        self.get(at)?.as_f64().ok_or_else(|| self.fail("expected a number"))
    }

    pub(crate) fn boolean(&self, at: usize) -> Result<bool, Fault> {
        match *self.get(at)? {
            Value::Bool(value) => Ok(value),
            ref other => Err(self.fail(&format!("expected a Boolean, found {}", other.type_name()))),
        }
    }

    pub(crate) fn bytes(&self, at: usize) -> Result<&[u8], Fault> {
        match self.get(at)? {
            Value::Bytes(bytes) => Ok(bytes),
            Value::Null => Err(self.fail("Value cannot be null.")),
            other => Err(self.fail(&format!("expected a Byte[], found {}", other.type_name()))),
        }
    }

    /// A type constant (`ValueType` index).
    pub(crate) fn value_type(&self, at: usize) -> Result<ValueType, Fault> {
        value_type_of(self.int(at)?).ok_or_else(|| self.fail("unknown type constant"))
    }

    /// A receiver that must not be null.
    pub(crate) fn receiver(&self) -> Result<&Value<'a>, Fault> {
        match self.get(0)? {
            Value::Null => {
                Err(Fault::eval("Expression evaluation failed. Object reference not set to an instance of an object."))
            }
            value => Ok(value),
        }
    }
}

/// The `ValueType` with index `index`, as control numbers them (declaration order).
pub(crate) fn value_type_of(index: i64) -> Option<ValueType> {
    use ValueType as T;
    const ALL: [ValueType; 15] = [
        T::String,
        T::Int,
        T::Double,
        T::Bool,
        T::JObject,
        T::JArray,
        T::JToken,
        T::Jwt,
        T::Response,
        T::DateTime,
        T::TimeSpan,
        T::Guid,
        T::Bytes,
        T::Array,
        T::Object,
    ];
    usize::try_from(index).ok().and_then(|index| ALL.get(index).copied())
}

/// `StringComparison` that ignores case (the odd values).
pub(crate) fn ignores_case(comparison: i64) -> bool {
    comparison % 2 == 1
}

fn object<'a>(mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    match a.builtin {
        B::ToString => {
            a.arity(&[1])?;
            a.receiver()?.to_text().map(Value::Str)
        }
        B::ToStringFormat => {
            a.arity(&[2])?;
            let format = a.text(1)?.to_owned();
            match a.receiver()? {
                Value::DateTime(date) => Ok(Value::string(time::format_datetime(date, &format))),
                Value::Int(value) => Ok(Value::string(
                    convert::format_int(*value, &format).ok_or_else(|| a.fail("Format specifier was invalid."))?,
                )),
                Value::Double(value) => Ok(Value::string(
                    convert::format_number(*value, &format).ok_or_else(|| a.fail("Format specifier was invalid."))?,
                )),
                Value::Guid(_) | Value::Str(_) | Value::TimeSpan(_) | Value::Bool(_) => {
                    a.receiver()?.to_text().map(Value::Str)
                }
                other => Err(a.fail(&format!("ToString(format) is not defined on {}", other.type_name()))),
            }
        }
        B::Equals => {
            a.arity(&[2])?;
            let other = a.take(1)?;
            Ok(Value::Bool(a.receiver()?.equals(&other)))
        }
        B::EqualsComparison => {
            a.arity(&[3])?;
            let comparison = a.int(2)?;
            let left = a.text(0)?;
            let right = a.opt_text(1)?;
            Ok(Value::Bool(right.is_some_and(|right| {
                if ignores_case(comparison) { string::eq_ignore_case(left, right) } else { left == right }
            })))
        }
        B::IsType => {
            a.arity(&[2])?;
            let ty = a.value_type(1)?;
            Ok(Value::Bool(a.get(0)?.is_type(ty)))
        }
        _ => Err(a.fail("not an object method")),
    }
}
