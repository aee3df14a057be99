//! Instance methods that compile to one builtin call with the receiver first (`s.Contains(x)`
//! → `Call(StrContains, 2)`), with their receiver kinds and parameter types.

use portcullis_contract::program::Builtin;

use super::{EnumType, Ret, StaticType};

/// Which receivers a method table entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// Every value (`ToString`, `Equals`).
    Any,
    Str,
    /// Arrays, lists, JSON arrays, dictionaries (LINQ).
    Seq,
    List,
    Dict,
    JObject,
    /// Any JSON value.
    Json,
    DateTime,
    /// `context.Request.Certificate` (`X509Certificate2`).
    Certificate,
    Guid,
    Bytes,
}

impl Recv {
    pub(crate) fn accepts(self, ty: &StaticType) -> bool {
        use StaticType as T;
        match self {
            Self::Any => true,
            Self::Str => matches!(ty, T::String | T::Char),
            Self::Seq => matches!(ty, T::Array(_) | T::List(_) | T::JArray | T::Dictionary(_) | T::Bytes | T::JToken),
            Self::List => matches!(ty, T::List(_)),
            Self::Dict => matches!(ty, T::Dictionary(_)),
            Self::JObject => matches!(ty, T::JObject | T::JToken),
            Self::Json => matches!(ty, T::JObject | T::JArray | T::JToken | T::JProperty),
            Self::DateTime => matches!(ty, T::DateTime),
            Self::Certificate => matches!(ty, T::Context(super::ContextObject::Certificate)),
            Self::Guid => matches!(ty, T::Guid),
            Self::Bytes => matches!(ty, T::Bytes),
        }
    }
}

/// A parameter's expected type, for compile-time checks of arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    Any,
    Str,
    Int,
    Double,
    Comparison,
}

impl Param {
    pub(crate) fn static_type(self) -> StaticType {
        match self {
            Self::Any => StaticType::Object,
            Self::Str => StaticType::String,
            Self::Int => StaticType::Int,
            Self::Double => StaticType::Double,
            Self::Comparison => StaticType::Enum(EnumType::StringComparison),
        }
    }
}

/// An instance method that compiles to one builtin call with the receiver first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Method {
    pub(crate) on: Recv,
    pub(crate) name: &'static str,
    /// Parameter types (the receiver excluded).
    pub(crate) params: &'static [Param],
    pub(crate) builtin: Builtin,
    pub(crate) ret: Ret,
}

const fn m(on: Recv, name: &'static str, params: &'static [Param], builtin: Builtin, ret: Ret) -> Method {
    Method { on, name, params, builtin, ret }
}

use Param as P;

/// Instance methods that are one builtin call. Methods with special lowering (lambdas, `out`
/// arguments, `params` arrays, generic arguments) are in `lower/methods.rs`.
pub(crate) const METHODS: &[Method] = &[
    m(Recv::Str, "Equals", &[P::Str, P::Comparison], Builtin::EqualsComparison, Ret::Bool),
    m(Recv::Str, "Contains", &[P::Str], Builtin::StrContains, Ret::Bool),
    m(Recv::Str, "Contains", &[P::Str, P::Comparison], Builtin::StrContainsComparison, Ret::Bool),
    m(Recv::Str, "StartsWith", &[P::Str], Builtin::StrStartsWith, Ret::Bool),
    m(Recv::Str, "StartsWith", &[P::Str, P::Comparison], Builtin::StrStartsWithComparison, Ret::Bool),
    m(Recv::Str, "EndsWith", &[P::Str], Builtin::StrEndsWith, Ret::Bool),
    m(Recv::Str, "EndsWith", &[P::Str, P::Comparison], Builtin::StrEndsWithComparison, Ret::Bool),
    m(Recv::Str, "IndexOf", &[P::Str], Builtin::StrIndexOf, Ret::Int),
    m(Recv::Str, "IndexOf", &[P::Str, P::Int], Builtin::StrIndexOf, Ret::Int),
    m(Recv::Str, "LastIndexOf", &[P::Str], Builtin::StrLastIndexOf, Ret::Int),
    m(Recv::Str, "Replace", &[P::Str, P::Str], Builtin::StrReplace, Ret::Str),
    m(Recv::Str, "Substring", &[P::Int], Builtin::StrSubstring, Ret::Str),
    m(Recv::Str, "Substring", &[P::Int, P::Int], Builtin::StrSubstringLength, Ret::Str),
    m(Recv::Str, "ToLower", &[], Builtin::StrToLower, Ret::Str),
    m(Recv::Str, "ToLowerInvariant", &[], Builtin::StrToLower, Ret::Str),
    m(Recv::Str, "ToUpper", &[], Builtin::StrToUpper, Ret::Str),
    m(Recv::Str, "ToUpperInvariant", &[], Builtin::StrToUpper, Ret::Str),
    m(Recv::Str, "Trim", &[], Builtin::StrTrim, Ret::Str),
    m(Recv::Str, "TrimStart", &[], Builtin::StrTrimStart, Ret::Str),
    m(Recv::Str, "TrimEnd", &[], Builtin::StrTrimEnd, Ret::Str),
    m(Recv::Str, "PadLeft", &[P::Int], Builtin::StrPadLeft, Ret::Str),
    m(Recv::Str, "PadLeft", &[P::Int, P::Str], Builtin::StrPadLeft, Ret::Str),
    m(Recv::Str, "PadRight", &[P::Int], Builtin::StrPadRight, Ret::Str),
    m(Recv::Str, "PadRight", &[P::Int, P::Str], Builtin::StrPadRight, Ret::Str),
    m(Recv::Str, "Insert", &[P::Int, P::Str], Builtin::StrInsert, Ret::Str),
    m(Recv::Str, "Remove", &[P::Int], Builtin::StrRemove, Ret::Str),
    m(Recv::Str, "Remove", &[P::Int, P::Int], Builtin::StrRemove, Ret::Str),
    m(Recv::Str, "ToCharArray", &[], Builtin::StrToCharArray, Ret::CharArray),
    m(Recv::Str, "AsJwt", &[], Builtin::AsJwt, Ret::Jwt),
    m(Recv::Str, "AsBasic", &[], Builtin::AsBasic, Ret::Basic),
    m(Recv::Str, "CompareTo", &[P::Str], Builtin::StrCompare, Ret::Int),
    m(Recv::Dict, "ContainsKey", &[P::Str], Builtin::ContainsKey, Ret::Bool),
    m(Recv::JObject, "ContainsKey", &[P::Str], Builtin::JContainsKey, Ret::Bool),
    m(Recv::JObject, "Property", &[P::Str], Builtin::JObjectProperty, Ret::JProperty),
    m(Recv::JObject, "Properties", &[], Builtin::JObjectProperties, Ret::JPropertyArray),
    m(Recv::JObject, "Remove", &[P::Str], Builtin::JObjectRemove, Ret::Bool),
    m(Recv::JObject, "Add", &[P::Str, P::Any], Builtin::JAdd, Ret::Void),
    m(Recv::Json, "Add", &[P::Any], Builtin::JAdd, Ret::Void),
    m(Recv::Json, "Remove", &[], Builtin::JTokenRemove, Ret::Void),
    m(Recv::Json, "SelectToken", &[P::Str], Builtin::JSelectToken, Ret::JToken),
    m(Recv::List, "Add", &[P::Any], Builtin::ListAdd, Ret::Void),
    m(Recv::List, "Clear", &[], Builtin::ListClear, Ret::Void),
    m(Recv::List, "Remove", &[P::Any], Builtin::ListRemove, Ret::Bool),
    m(Recv::List, "RemoveAt", &[P::Int], Builtin::ListRemoveAt, Ret::Void),
    m(Recv::List, "Insert", &[P::Int, P::Any], Builtin::ListInsert, Ret::Void),
    m(Recv::List, "AddRange", &[P::Any], Builtin::ListAddRange, Ret::Void),
    m(Recv::List, "IndexOf", &[P::Any], Builtin::SeqIndexOf, Ret::Int),
    m(Recv::Seq, "Contains", &[P::Any], Builtin::SeqContains, Ret::Bool),
    m(Recv::Seq, "Count", &[], Builtin::SeqCount, Ret::Int),
    m(Recv::Seq, "First", &[], Builtin::SeqFirst, Ret::Element),
    m(Recv::Seq, "FirstOrDefault", &[], Builtin::SeqFirstOrDefault, Ret::Element),
    m(Recv::Seq, "Last", &[], Builtin::SeqLast, Ret::Element),
    m(Recv::Seq, "LastOrDefault", &[], Builtin::SeqLastOrDefault, Ret::Element),
    m(Recv::Seq, "ToArray", &[], Builtin::SeqToArray, Ret::ElementArray),
    m(Recv::Seq, "ToList", &[], Builtin::SeqToList, Ret::ElementList),
    m(Recv::Seq, "Distinct", &[], Builtin::SeqDistinct, Ret::ElementArray),
    m(Recv::Seq, "Reverse", &[], Builtin::SeqReverse, Ret::ElementArray),
    m(Recv::Seq, "Skip", &[P::Int], Builtin::SeqSkip, Ret::ElementArray),
    m(Recv::Seq, "Take", &[P::Int], Builtin::SeqTake, Ret::ElementArray),
    m(Recv::Seq, "Order", &[], Builtin::SeqOrder, Ret::ElementArray),
    m(Recv::Seq, "Any", &[], Builtin::SeqAny, Ret::Bool),
    m(Recv::Seq, "Sum", &[], Builtin::SeqSum, Ret::Element),
    m(Recv::Seq, "Single", &[], Builtin::SeqSingle, Ret::Element),
    m(Recv::Seq, "SingleOrDefault", &[], Builtin::SeqSingleOrDefault, Ret::Element),
    m(Recv::Seq, "Min", &[], Builtin::SeqMin, Ret::Element),
    m(Recv::Seq, "Max", &[], Builtin::SeqMax, Ret::Element),
    m(Recv::Seq, "Average", &[], Builtin::SeqAverage, Ret::Double),
    m(Recv::Guid, "ToByteArray", &[], Builtin::GuidToByteArray, Ret::Bytes),
    m(Recv::Guid, "GetHashCode", &[], Builtin::GuidHashCode, Ret::Int),
    m(Recv::Bytes, "Encrypt", &[P::Any, P::Any, P::Any], Builtin::BytesEncrypt, Ret::Bytes),
    m(Recv::Bytes, "Decrypt", &[P::Any, P::Any, P::Any], Builtin::BytesDecrypt, Ret::Bytes),
    m(Recv::DateTime, "AddSeconds", &[P::Double], Builtin::DateTimeAddSeconds, Ret::DateTime),
    m(Recv::DateTime, "AddMinutes", &[P::Double], Builtin::DateTimeAddMinutes, Ret::DateTime),
    m(Recv::DateTime, "AddHours", &[P::Double], Builtin::DateTimeAddHours, Ret::DateTime),
    m(Recv::DateTime, "AddDays", &[P::Double], Builtin::DateTimeAddDays, Ret::DateTime),
    m(Recv::DateTime, "AddMilliseconds", &[P::Double], Builtin::DateTimeAddMilliseconds, Ret::DateTime),
    m(Recv::DateTime, "Subtract", &[P::Any], Builtin::DateTimeSubtract, Ret::TimeSpan),
    m(Recv::Any, "Equals", &[P::Any], Builtin::Equals, Ret::Bool),
    m(Recv::Certificate, "Verify", &[], Builtin::CertificateVerify, Ret::Bool),
    m(Recv::Certificate, "VerifyNoRevocation", &[], Builtin::CertificateVerifyNoRevocation, Ret::Bool),
    m(Recv::Any, "ToString", &[], Builtin::ToString, Ret::Str),
    m(Recv::Any, "ToString", &[P::Str], Builtin::ToStringFormat, Ret::Str),
];

/// The table entries for `name` with `argc` arguments on `receiver`. On a dynamic receiver,
/// the entries of every receiver kind (the caller requires them to agree).
pub(crate) fn methods(receiver: &StaticType, name: &str, argc: usize) -> Vec<&'static Method> {
    let dynamic = receiver.is_dynamic();
    METHODS.iter().filter(|m| m.name == name && m.params.len() == argc && (dynamic || m.on.accepts(receiver))).collect()
}

/// Method names valid on `receiver`, for suggestions.
pub(crate) fn method_names(receiver: &StaticType) -> impl Iterator<Item = &'static str> + '_ {
    METHODS.iter().filter(move |m| receiver.is_dynamic() || m.on.accepts(receiver)).map(|m| m.name)
}
