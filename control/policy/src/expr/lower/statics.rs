//! Static classes: `Regex.IsMatch(..)`, `System.Text.Encoding.UTF8.GetBytes(..)`,
//! `StringComparison.OrdinalIgnoreCase`, `DateTime.UtcNow`, `int.Parse(..)` ...
//!
//! A dotted name that does not start with a local or `context` is a static path: namespaces
//! (`System.`, `Newtonsoft.Json.`) are dropped, .NET aliases fold into C# keywords
//! (`String` → `string`), and the remaining class and member resolve against the tables here.

use portcullis_contract::program::{Builtin, Op, SPLIT_REMOVE_EMPTY_ENTRIES, StringComparison};

use super::super::dotnet_regex::{self, REGEX_OPTIONS};
use super::super::lexer::Span;
use super::super::syntax::{Arg, BinaryOp, Expr, ExprKind, TypeName};
use super::super::types::{self, EnumType, HashKind, Param, Ret, StaticType};
use super::{Lowerer, R, error};
use portcullis_contract::program::Const;

/// One segment of a dotted name and where it is.
pub(super) type Segment = (String, Span);

/// Namespaces dropped from the front of a static path.
const NAMESPACES: &[&str] = &[
    "System",
    "Text",
    "RegularExpressions",
    "Net",
    "Linq",
    "Collections",
    "Generic",
    "Security",
    "Cryptography",
    "Newtonsoft",
    "Json",
    "Globalization",
];

/// Static classes policy expressions may name.
const CLASSES: &[&str] = &[
    "string",
    "int",
    "long",
    "double",
    "bool",
    "char",
    "Convert",
    "Math",
    "Encoding",
    "WebUtility",
    "Uri",
    "Regex",
    "RegexOptions",
    "StringComparison",
    "StringSplitOptions",
    "Formatting",
    "JTokenType",
    "DateTimeKind",
    "Environment",
    "StringBuilder",
    "Random",
    "Exception",
    "Aes",
    "Rijndael",
    "DateTime",
    "TimeSpan",
    "Guid",
    "JObject",
    "JArray",
    "JToken",
    "JValue",
    "JProperty",
    "JsonConvert",
    "Array",
    "SHA256",
    "SHA1",
    "SHA512",
    "MD5",
    "BitConverter",
    "HMACSHA256",
    "HMACSHA1",
    "HMACSHA512",
    "List",
    "Dictionary",
    "Enumerable",
    EXTENSIONS_CLASS,
];

/// The class that declares APIM's extension methods, and those methods.
const EXTENSIONS_CLASS: &str = "ExpressionSyntaxExtensions";
const EXTENSION_METHODS: &[&str] =
    &["AsJwt", "TryParseJwt", "AsBasic", "TryParseBasic", "Encrypt", "Decrypt", "VerifyNoRevocation"];

/// LINQ to XML: in APIM's allow-list, not in the instruction set yet.
const XML_CLASSES: &[&str] = &["XElement", "XDocument", "XNode", "XAttribute", "XName", "XNamespace"];

/// Whether `name` (as written) names a static class.
pub(super) fn is_static_class(name: &str) -> bool {
    CLASSES.contains(&types::normalize_type_name(name))
}

/// The static path `e` spells (`System.Text.Encoding.UTF8`), or `None` when it starts with a
/// value (a local or `context`) or contains anything but names.
pub(super) fn static_path(lowerer: &Lowerer<'_>, e: &Expr) -> Option<Vec<Segment>> {
    match &e.kind {
        ExprKind::Name(name) if lowerer.lookup(name).is_none() && name != "context" => {
            Some(vec![(name.clone(), e.span)])
        }
        ExprKind::Member { target, name, name_span, null_conditional: false, type_args } if type_args.is_empty() => {
            let mut path = static_path(lowerer, target)?;
            path.push((name.clone(), *name_span));
            Some(path)
        }
        _ => None,
    }
}

/// Splits a static path into its class (normalized; `Encoding.UTF8` counts as one class) and
/// the members after it. Errors name the first segment that is not a known class or namespace.
fn split_class(path: &[Segment]) -> R<(String, &[Segment])> {
    let mut rest = path;
    while let [(first, _), tail @ ..] = rest {
        if NAMESPACES.contains(&first.as_str()) && !tail.is_empty() {
            rest = tail;
        } else {
            break;
        }
    }
    let Some(((first, span), tail)) = rest.split_first() else {
        return error(Span::default(), "empty name");
    };
    let class = types::normalize_type_name(first).to_owned();
    if class == "Encoding" {
        if let Some(((encoding, encoding_span), tail)) = tail.split_first() {
            return match encoding.as_str() {
                "UTF8" | "ASCII" | "Default" => Ok((format!("Encoding.{encoding}"), tail)),
                _ => error(*encoding_span, format!("Encoding.{encoding} is not supported (only UTF8 and ASCII)")),
            };
        }
    }
    if !CLASSES.contains(&class.as_str()) {
        let mut message = format!("`{first}` does not exist in the current context");
        if let Some(suggestion) = types::suggest(first, CLASSES.iter().copied().chain(["context"])) {
            message.push_str(&format!(" (did you mean `{suggestion}`?)"));
        } else if XML_CLASSES.contains(&first.as_str()) {
            message = format!("XML (`{first}`) is not supported in policy expressions yet");
        } else if first.chars().next().is_some_and(char::is_uppercase) {
            message = format!("the type `{first}` is not available in policy expressions");
        }
        return error(*span, message);
    }
    Ok((class, tail))
}

/// The value of an enum constant (`RegexOptions.IgnoreCase`).
fn enum_constant(class: &str, member: &str) -> Option<(i64, EnumType)> {
    let comparison = |c: StringComparison| c as i64;
    match class {
        "StringComparison" => {
            let value = match member {
                "CurrentCulture" => comparison(StringComparison::CurrentCulture),
                "CurrentCultureIgnoreCase" => comparison(StringComparison::CurrentCultureIgnoreCase),
                "InvariantCulture" => comparison(StringComparison::InvariantCulture),
                "InvariantCultureIgnoreCase" => comparison(StringComparison::InvariantCultureIgnoreCase),
                "Ordinal" => comparison(StringComparison::Ordinal),
                "OrdinalIgnoreCase" => comparison(StringComparison::OrdinalIgnoreCase),
                _ => return None,
            };
            Some((value, EnumType::StringComparison))
        }
        "RegexOptions" => REGEX_OPTIONS.iter().find(|(n, _)| *n == member).map(|(_, v)| (*v, EnumType::RegexOptions)),
        "StringSplitOptions" => match member {
            "None" => Some((0, EnumType::StringSplitOptions)),
            "RemoveEmptyEntries" => Some((SPLIT_REMOVE_EMPTY_ENTRIES, EnumType::StringSplitOptions)),
            _ => None,
        },
        "Formatting" => match member {
            "None" => Some((0, EnumType::Formatting)),
            "Indented" => Some((1, EnumType::Formatting)),
            _ => None,
        },
        "JTokenType" => portcullis_contract::program::JTOKEN_TYPES
            .iter()
            .position(|name| *name == member)
            .map(|at| (at as i64, EnumType::JTokenType)),
        "DateTimeKind" => match member {
            "Unspecified" => Some((0, EnumType::DateTimeKind)),
            "Utc" => Some((1, EnumType::DateTimeKind)),
            "Local" => Some((2, EnumType::DateTimeKind)),
            _ => None,
        },
        _ => None,
    }
}

/// Folds a compile-time integer: a literal, an enum constant, or flags combined with `|`.
pub(super) fn constant_int(lowerer: &Lowerer<'_>, e: &Expr) -> Option<(i64, StaticType)> {
    match &e.kind {
        ExprKind::Int(i) => Some((*i, StaticType::Int)),
        ExprKind::Member { .. } => {
            let path = static_path(lowerer, e)?;
            let (class, rest) = split_class(&path).ok()?;
            let [(member, _)] = rest else { return None };
            enum_constant(&class, member).map(|(v, t)| (v, StaticType::Enum(t)))
        }
        ExprKind::Binary { op: op @ (BinaryOp::BitOr | BinaryOp::BitAnd | BinaryOp::BitXor), lhs, rhs } => {
            let (a, ta) = constant_int(lowerer, lhs)?;
            let (b, _) = constant_int(lowerer, rhs)?;
            let value = match op {
                BinaryOp::BitOr => a | b,
                BinaryOp::BitAnd => a & b,
                _ => a ^ b,
            };
            Some((value, ta))
        }
        _ => None,
    }
}

/// A static method that is exactly one builtin call.
type StaticRow = (&'static str, &'static str, &'static [Param], Builtin, Ret);

use Param as P;

const STATIC_CALLS: &[StaticRow] = &[
    ("string", "IsNullOrEmpty", &[P::Str], Builtin::StrIsNullOrEmpty, Ret::Bool),
    ("string", "IsNullOrWhiteSpace", &[P::Str], Builtin::StrIsNullOrWhiteSpace, Ret::Bool),
    ("string", "Compare", &[P::Str, P::Str], Builtin::StrCompare, Ret::Int),
    ("string", "Compare", &[P::Str, P::Str, P::Comparison], Builtin::StrCompareComparison, Ret::Int),
    ("string", "Equals", &[P::Str, P::Str, P::Comparison], Builtin::EqualsComparison, Ret::Bool),
    ("int", "Parse", &[P::Str], Builtin::IntParse, Ret::Int),
    ("long", "Parse", &[P::Str], Builtin::IntParse, Ret::Int),
    ("double", "Parse", &[P::Str], Builtin::DoubleParse, Ret::Double),
    ("bool", "Parse", &[P::Str], Builtin::BoolParse, Ret::Bool),
    ("Convert", "ToInt32", &[P::Any], Builtin::ConvertToInt32, Ret::Int),
    ("Convert", "ToInt64", &[P::Any], Builtin::ConvertToInt32, Ret::Int),
    ("Convert", "ToDouble", &[P::Any], Builtin::ConvertToDouble, Ret::Double),
    ("Convert", "ToDecimal", &[P::Any], Builtin::ConvertToDouble, Ret::Double),
    ("Convert", "ToBoolean", &[P::Any], Builtin::ConvertToBoolean, Ret::Bool),
    ("Convert", "ToString", &[P::Any], Builtin::ConvertToString, Ret::Str),
    ("Convert", "ToBase64String", &[P::Any], Builtin::ConvertToBase64String, Ret::Str),
    ("Convert", "FromBase64String", &[P::Str], Builtin::ConvertFromBase64String, Ret::Bytes),
    ("Math", "Abs", &[P::Any], Builtin::MathAbs, Ret::Same),
    ("Math", "Round", &[P::Double], Builtin::MathRound, Ret::Double),
    ("Math", "Round", &[P::Double, P::Int], Builtin::MathRound, Ret::Double),
    ("Math", "Floor", &[P::Double], Builtin::MathFloor, Ret::Double),
    ("Math", "Ceiling", &[P::Double], Builtin::MathCeiling, Ret::Double),
    ("Encoding.UTF8", "GetBytes", &[P::Str], Builtin::Utf8GetBytes, Ret::Bytes),
    ("Encoding.ASCII", "GetBytes", &[P::Str], Builtin::Utf8GetBytes, Ret::Bytes),
    ("Encoding.Default", "GetBytes", &[P::Str], Builtin::Utf8GetBytes, Ret::Bytes),
    ("Encoding.UTF8", "GetString", &[P::Any], Builtin::Utf8GetString, Ret::Str),
    ("Encoding.ASCII", "GetString", &[P::Any], Builtin::Utf8GetString, Ret::Str),
    ("Encoding.Default", "GetString", &[P::Any], Builtin::Utf8GetString, Ret::Str),
    ("WebUtility", "UrlEncode", &[P::Str], Builtin::WebUtilityUrlEncode, Ret::Str),
    ("WebUtility", "UrlDecode", &[P::Str], Builtin::WebUtilityUrlDecode, Ret::Str),
    ("WebUtility", "HtmlEncode", &[P::Str], Builtin::WebUtilityHtmlEncode, Ret::Str),
    ("WebUtility", "HtmlDecode", &[P::Str], Builtin::WebUtilityHtmlDecode, Ret::Str),
    ("Uri", "EscapeDataString", &[P::Str], Builtin::UriEscapeDataString, Ret::Str),
    ("Uri", "UnescapeDataString", &[P::Str], Builtin::UriUnescapeDataString, Ret::Str),
    ("SHA256", "HashData", &[P::Any], Builtin::Sha256Hash, Ret::Bytes),
    ("SHA1", "HashData", &[P::Any], Builtin::Sha1Hash, Ret::Bytes),
    ("SHA512", "HashData", &[P::Any], Builtin::Sha512Hash, Ret::Bytes),
    ("MD5", "HashData", &[P::Any], Builtin::Md5Hash, Ret::Bytes),
    ("BitConverter", "ToString", &[P::Any], Builtin::BitConverterToString, Ret::Str),
    ("BitConverter", "ToInt32", &[P::Any, P::Int], Builtin::BitConverterToInt32, Ret::Int),
    ("Regex", "Escape", &[P::Str], Builtin::RegexEscape, Ret::Str),
    ("DateTime", "Parse", &[P::Str], Builtin::DateTimeParse, Ret::DateTime),
    ("TimeSpan", "FromSeconds", &[P::Double], Builtin::TimeSpanFromSeconds, Ret::TimeSpan),
    ("TimeSpan", "FromMilliseconds", &[P::Double], Builtin::TimeSpanFromMilliseconds, Ret::TimeSpan),
    ("TimeSpan", "FromMinutes", &[P::Double], Builtin::TimeSpanFromMinutes, Ret::TimeSpan),
    ("TimeSpan", "FromHours", &[P::Double], Builtin::TimeSpanFromHours, Ret::TimeSpan),
    ("TimeSpan", "FromDays", &[P::Double], Builtin::TimeSpanFromDays, Ret::TimeSpan),
    ("Guid", "NewGuid", &[], Builtin::GuidNewGuid, Ret::Guid),
    ("Guid", "Parse", &[P::Str], Builtin::GuidParse, Ret::Guid),
    ("JObject", "Parse", &[P::Str], Builtin::JObjectParse, Ret::JToken),
    ("JArray", "Parse", &[P::Str], Builtin::JArrayParse, Ret::JToken),
    ("JToken", "Parse", &[P::Str], Builtin::JTokenParse, Ret::JToken),
    ("JObject", "FromObject", &[P::Any], Builtin::JTokenFromObject, Ret::JToken),
    ("JArray", "FromObject", &[P::Any], Builtin::JTokenFromObject, Ret::JToken),
    ("JToken", "FromObject", &[P::Any], Builtin::JTokenFromObject, Ret::JToken),
    ("JsonConvert", "SerializeObject", &[P::Any], Builtin::JsonSerialize, Ret::Str),
    ("Array", "IndexOf", &[P::Any, P::Any], Builtin::SeqIndexOf, Ret::Int),
];

/// Static members and methods with special lowering, for suggestions.
const SPECIAL_STATICS: &[(&str, &str)] = &[
    ("string", "Empty"),
    ("string", "Join"),
    ("string", "Format"),
    ("string", "Concat"),
    ("string", "Equals"),
    ("int", "TryParse"),
    ("int", "MaxValue"),
    ("int", "MinValue"),
    ("long", "MaxValue"),
    ("long", "MinValue"),
    ("long", "TryParse"),
    ("double", "TryParse"),
    ("bool", "TryParse"),
    ("DateTime", "TryParse"),
    ("Guid", "TryParse"),
    ("Convert", "ToByte"),
    ("Convert", "ToSByte"),
    ("Convert", "ToInt16"),
    ("Convert", "ToUInt16"),
    ("Convert", "ToUInt32"),
    ("Math", "Min"),
    ("Math", "Max"),
    ("Regex", "IsMatch"),
    ("Regex", "Match"),
    ("Regex", "Matches"),
    ("Regex", "Replace"),
    ("Regex", "Split"),
    ("DateTime", "UtcNow"),
    ("DateTime", "Now"),
    ("DateTime", "MinValue"),
    ("DateTime", "MaxValue"),
    ("DateTime", "UnixEpoch"),
    ("TimeSpan", "MaxValue"),
    ("TimeSpan", "MinValue"),
    ("Environment", "NewLine"),
    ("TimeSpan", "Zero"),
    ("Guid", "Empty"),
    ("SHA256", "Create"),
    ("SHA1", "Create"),
    ("SHA512", "Create"),
    ("MD5", "Create"),
    ("Aes", "Create"),
    ("JsonConvert", "DeserializeObject"),
    ("Array", "Exists"),
    ("Array", "Find"),
    ("Array", "FindAll"),
    ("Array", "TrueForAll"),
    ("DateTime", "FromUnixTimeSeconds"),
    ("DateTime", "FromUnixTimeMilliseconds"),
];

fn unknown_static(class: &str, member: &str, span: Span) -> ExprErrorResult {
    let candidates = STATIC_CALLS
        .iter()
        .map(|(c, m, ..)| (*c, *m))
        .chain(SPECIAL_STATICS.iter().copied())
        .filter(|(c, _)| *c == class)
        .map(|(_, m)| m);
    let enum_names: Vec<&str> = match class {
        "RegexOptions" => REGEX_OPTIONS.iter().map(|(n, _)| *n).collect(),
        "StringComparison" => vec![
            "CurrentCulture",
            "CurrentCultureIgnoreCase",
            "InvariantCulture",
            "InvariantCultureIgnoreCase",
            "Ordinal",
            "OrdinalIgnoreCase",
        ],
        "StringSplitOptions" => vec!["None", "RemoveEmptyEntries"],
        "Formatting" => vec!["None", "Indented"],
        _ => Vec::new(),
    };
    let mut message = format!("`{class}` has no supported static member `{member}`");
    if let Some(suggestion) = types::suggest(member, candidates.chain(enum_names)) {
        message.push_str(&format!(" (did you mean `{suggestion}`?)"));
    }
    error(span, message)
}

type ExprErrorResult = R<StaticType>;

impl Lowerer<'_> {
    /// A static member read (`DateTime.UtcNow`, `RegexOptions.IgnoreCase`, `string.Empty`),
    /// followed by any instance members after it (`DateTime.UtcNow.Year`).
    pub(super) fn static_member(&mut self, path: &[Segment], span: Span) -> R<StaticType> {
        let (class, rest) = split_class(path)?;
        let Some(((member, member_span), after)) = rest.split_first() else {
            return error(span, format!("`{}` is a type, not a value", self.quote(span)));
        };
        let mut ty = self.static_value(&class, member, *member_span)?;
        for (name, name_span) in after {
            let member_end = Span::new(span.start, name_span.end);
            ty = self.member(&ty, name, *name_span, member_end)?;
        }
        Ok(ty)
    }

    fn static_value(&mut self, class: &str, member: &str, span: Span) -> R<StaticType> {
        if let Some((value, ty)) = enum_constant(class, member) {
            self.code.push_int(value);
            return Ok(StaticType::Enum(ty));
        }
        match (class, member) {
            ("string", "Empty") => {
                self.code.push_str("");
                Ok(StaticType::String)
            }
            ("DateTime", "UtcNow") => {
                self.call(Builtin::DateTimeUtcNow, 0, span)?;
                Ok(StaticType::DateTime)
            }
            ("DateTime", "Now") => {
                self.call(Builtin::DateTimeNow, 0, span)?;
                Ok(StaticType::DateTime)
            }
            ("int", "MaxValue") | ("int", "MinValue") | ("long", "MaxValue") | ("long", "MinValue") => {
                let value = match (class, member) {
                    ("int", "MaxValue") => i64::from(i32::MAX),
                    ("int", "MinValue") => i64::from(i32::MIN),
                    ("long", "MaxValue") => i64::MAX,
                    _ => i64::MIN,
                };
                self.code.push_int(value);
                Ok(StaticType::Int)
            }
            ("TimeSpan", "Zero") => {
                self.emit(Op::Int(0));
                self.call(Builtin::TimeSpanFromSeconds, 1, span)?;
                Ok(StaticType::TimeSpan)
            }
            ("DateTime", "MinValue" | "MaxValue" | "UnixEpoch") => {
                let (y, mo, d, h, mi, sec, ms) = match member {
                    "MinValue" => (1, 1, 1, 0, 0, 0, 0),
                    "UnixEpoch" => (1970, 1, 1, 0, 0, 0, 0),
                    _ => (9999, 12, 31, 23, 59, 59, 999),
                };
                for part in [y, mo, d, h, mi, sec, ms] {
                    self.emit(Op::Int(part));
                }
                self.call(Builtin::DateTimeNew, 7, span)?;
                Ok(StaticType::DateTime)
            }
            ("TimeSpan", "MaxValue" | "MinValue") => {
                self.push_const(Const::Double(if member == "MaxValue" {
                    922_337_203_685.477
                } else {
                    -922_337_203_685.477
                }));
                self.call(Builtin::TimeSpanFromSeconds, 1, span)?;
                Ok(StaticType::TimeSpan)
            }
            ("Environment", "NewLine") => {
                self.code.push_str("\n");
                Ok(StaticType::String)
            }
            ("Guid", "Empty") => {
                self.code.push_str("00000000-0000-0000-0000-000000000000");
                self.call(Builtin::GuidParse, 1, span)?;
                Ok(StaticType::Guid)
            }
            ("Regex", "InfiniteMatchTimeout") => {
                self.emit(Op::Null);
                Ok(StaticType::TimeSpan)
            }
            (c, _) if c.starts_with("Encoding.") => {
                error(span, format!("`{c}` can only be used to call GetBytes and GetString"))
            }
            _ => unknown_static(class, member, span),
        }
    }

    /// `callee(args)`: a static method, or an instance method on the value before the dot.
    pub(super) fn call_expr(&mut self, callee: &Expr, args: &[Arg], span: Span) -> R<StaticType> {
        let ExprKind::Member { target, name, name_span, null_conditional, type_args } = &callee.kind else {
            if let ExprKind::Name(name) = &callee.kind {
                if let Some(function) = self.functions.iter().rev().find(|f| f.name == *name).cloned() {
                    return self.inline_call(&function, args, span);
                }
                return error(
                    callee.span,
                    format!("`{name}` is not a method; call methods on values or on the allowed types"),
                );
            }
            return error(callee.span, "only methods can be called");
        };
        if let Some(path) = static_path(self, target) {
            let (class, rest) = split_class(&path)?;
            if rest.is_empty() && class == EXTENSIONS_CLASS {
                return self.extension_call(name, *name_span, type_args, args, span);
            }
            if rest.is_empty() {
                return self.static_call(&class, name, *name_span, type_args, args, span);
            }
        }
        let receiver = self.receiver(target, *null_conditional)?;
        self.method_call(&receiver, target.span, name, *name_span, type_args, args, span)
    }

    /// `ExpressionSyntaxExtensions.TryParseJwt(s, out jwt)`: APIM's extension methods called
    /// through their class, as C# allows; lowered as the instance call `s.TryParseJwt(out jwt)`.
    fn extension_call(
        &mut self,
        method: &str,
        method_span: Span,
        type_args: &[TypeName],
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        if !EXTENSION_METHODS.contains(&method) {
            return error(
                method_span,
                format!(
                    "`{EXTENSIONS_CLASS}.{method}` is not one of APIM's extension methods ({})",
                    EXTENSION_METHODS.join(", ")
                ),
            );
        }
        let Some((first, rest)) = args.split_first().filter(|(first, _)| first.out.is_none() && first.name.is_none())
        else {
            return error(
                span,
                format!("`{EXTENSIONS_CLASS}.{method}` needs the value it extends as its first argument"),
            );
        };
        let callee = Expr {
            kind: ExprKind::Member {
                target: Box::new(first.value.clone()),
                name: method.to_owned(),
                name_span: method_span,
                null_conditional: false,
                type_args: type_args.to_vec(),
            },
            span,
        };
        self.call_expr(&callee, rest, span)
    }

    fn static_call(
        &mut self,
        class: &str,
        method: &str,
        method_span: Span,
        type_args: &[TypeName],
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        if let Some(ty) = self.special_static_call(class, method, type_args, args, span)? {
            return Ok(ty);
        }
        if !type_args.is_empty() {
            return error(method_span, format!("`{class}.{method}` takes no type arguments"));
        }
        let rows: Vec<&StaticRow> = STATIC_CALLS.iter().filter(|(c, m, ..)| *c == class && *m == method).collect();
        let Some(&&(_, _, params, builtin, ret)) = rows.iter().find(|(_, _, params, ..)| params.len() == args.len())
        else {
            if rows.is_empty() {
                return unknown_static(class, method, method_span);
            }
            let counts: Vec<String> = rows.iter().map(|(_, _, p, ..)| p.len().to_string()).collect();
            return error(
                span,
                format!("`{class}.{method}` takes {} argument(s), not {}", counts.join(" or "), args.len()),
            );
        };
        let mut first = StaticType::Object;
        for (i, (arg, param)) in args.iter().zip(params.iter()).enumerate() {
            let ty = self.argument(arg, *param, &format!("{class}.{method}"))?;
            if i == 0 {
                first = ty;
            }
        }
        self.call(builtin, args.len(), span)?;
        Ok(match (class, method) {
            ("JObject", "Parse" | "FromObject") => StaticType::JObject,
            ("JArray", "Parse" | "FromObject") => StaticType::JArray,
            _ => ret.resolve(&first),
        })
    }

    /// Static methods whose lowering is more than one call; `None` when `class.method` is not one.
    fn special_static_call(
        &mut self,
        class: &str,
        method: &str,
        type_args: &[TypeName],
        args: &[Arg],
        span: Span,
    ) -> R<Option<StaticType>> {
        let ty = match (class, method) {
            ("Convert", "ToByte" | "ToSByte" | "ToInt16" | "ToUInt16" | "ToUInt32") => {
                // Convert.ToInt32's parsing and rounding, then a range check (OverflowException).
                let what = format!("Convert.{method}");
                self.expect_args(args, 1, 1, &what, span)?;
                self.argument(&args[0], Param::Any, &what)?;
                self.call(Builtin::ConvertToInt32, 1, span)?;
                let kind = match method {
                    "ToSByte" => 0,
                    "ToByte" => 1,
                    "ToInt16" => 2,
                    "ToUInt16" => 3,
                    _ => 4,
                };
                self.code.push_int(kind + portcullis_contract::program::NARROW_CHECKED);
                self.call(Builtin::IntNarrow, 2, span)?;
                StaticType::Int
            }
            ("string", "Format") => self.string_format(args, span)?,
            ("string", "Join") => self.string_join(args, span)?,
            ("string", "Concat") => {
                self.expect_args(args, 1, usize::MAX, "string.Concat", span)?;
                let types = self.positional_args(args, "string.Concat")?;
                match types.as_slice() {
                    [StaticType::Array(_) | StaticType::List(_)] => self.call(Builtin::StrConcat, 1, span)?,
                    _ => self.emit(Op::Concat(u16::try_from(args.len()).unwrap_or(u16::MAX))),
                }
                StaticType::String
            }
            ("string", "Equals") if args.len() == 2 => {
                // Static `string.Equals(a, b)` is `a == b` (null-safe, unlike `a.Equals(b)`).
                self.argument(&args[0], Param::Str, "string.Equals")?;
                self.argument(&args[1], Param::Str, "string.Equals")?;
                self.emit(Op::Eq);
                StaticType::Bool
            }
            ("int" | "long", "TryParse") => self.int_try_parse(args, span)?,
            ("double" | "bool" | "DateTime" | "Guid", "TryParse") => self.try_parse(class, args, span)?,
            ("Math", "Min" | "Max") => {
                self.expect_args(args, 2, 2, &format!("Math.{method}"), span)?;
                let a = self.argument(&args[0], Param::Double, &format!("Math.{method}"))?;
                let b = self.argument(&args[1], Param::Double, &format!("Math.{method}"))?;
                self.call(if method == "Min" { Builtin::MathMin } else { Builtin::MathMax }, 2, span)?;
                types::unify(&a, &b)
            }
            ("Aes" | "Rijndael", "Create") => {
                self.expect_args(args, 0, 0, &format!("{class}.Create"), span)?;
                self.code.push_str("Aes");
                StaticType::SymmetricAlgorithm
            }
            ("SHA256" | "SHA1" | "SHA512" | "MD5", "Create") => {
                self.expect_args(args, 0, 0, &format!("{class}.Create"), span)?;
                self.emit(Op::Null);
                StaticType::Hasher(hash_kind(class))
            }
            ("Regex", "IsMatch" | "Match" | "Matches" | "Split" | "Replace") => {
                self.regex_static(method, args, span)?
            }
            ("JsonConvert", "SerializeObject") if args.len() == 2 => self.serialize_formatted(args, span)?,
            ("JsonConvert", "DeserializeObject") => self.deserialize(type_args, args, span)?,
            ("Array", "Exists" | "Find" | "FindAll" | "TrueForAll") => self.array_predicate(method, args, span)?,
            ("DateTime", "FromUnixTimeSeconds" | "FromUnixTimeMilliseconds") => {
                // `DateTimeOffset.FromUnixTimeSeconds(n)` = epoch.AddSeconds(n).
                self.expect_args(args, 1, 1, method, span)?;
                self.push_epoch(span)?;
                self.argument(&args[0], Param::Int, method)?;
                let add = if method == "FromUnixTimeSeconds" {
                    Builtin::DateTimeAddSeconds
                } else {
                    Builtin::DateTimeAddMilliseconds
                };
                self.call(add, 2, span)?;
                StaticType::DateTime
            }
            _ => return Ok(None),
        };
        Ok(Some(ty))
    }

    /// `JsonConvert.SerializeObject(x, Formatting.None | Formatting.Indented)`.
    fn serialize_formatted(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_plain(args, "JsonConvert.SerializeObject")?;
        match constant_int(self, &args[1].value) {
            Some((0, _)) => {
                self.expr(&args[0].value)?;
                self.call(Builtin::JsonSerialize, 1, span)?;
            }
            Some((1, _)) => {
                self.expr(&args[0].value)?;
                self.call(Builtin::JTokenFromObject, 1, span)?;
                self.call(Builtin::ToString, 1, span)?;
            }
            _ => {
                return error(args[1].value.span, "the formatting must be Formatting.None or Formatting.Indented");
            }
        }
        Ok(StaticType::String)
    }

    /// `JsonConvert.DeserializeObject(s)` / `DeserializeObject<T>(s)` (a cast to `T` after).
    fn deserialize(&mut self, type_args: &[TypeName], args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 1, 1, "JsonConvert.DeserializeObject", span)?;
        self.argument(&args[0], Param::Str, "JsonConvert.DeserializeObject")?;
        self.call(Builtin::JsonDeserialize, 1, span)?;
        match type_args {
            [] => Ok(StaticType::JToken),
            [ty] => {
                let target = self.resolve_type(ty)?;
                let vt = types::value_type(&target)
                    .ok_or_else(|| super::ExprError::new(ty.span, format!("cannot deserialize into {target}")))?;
                self.emit(Op::Cast(vt));
                Ok(target)
            }
            _ => error(span, "DeserializeObject takes one type argument"),
        }
    }

    /// `Array.Exists(array, x => ..)` and friends: the LINQ loops with the array as receiver.
    fn array_predicate(&mut self, method: &str, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 2, 2, &format!("Array.{method}"), span)?;
        self.expect_plain(args, &format!("Array.{method}"))?;
        let sequence = self.expr(&args[0].value)?;
        let linq = match method {
            "Exists" => "Any",
            "Find" => "FirstOrDefault",
            "FindAll" => "Where",
            _ => "All",
        };
        let ty = self.linq(&sequence, args[0].value.span, linq, &args[1..], span)?;
        if method == "FindAll" {
            self.call(Builtin::SeqToArray, 1, span)?;
            return Ok(StaticType::array_of(ty.element_or_object()));
        }
        Ok(ty)
    }

    pub(super) fn string_format(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 1, usize::MAX, "string.Format", span)?;
        self.expect_plain(args, "string.Format")?;
        self.argument(&args[0], Param::Str, "string.Format")?;
        let rest = &args[1..];
        let single_array = match rest {
            [only] => {
                let ty = self.expr(&only.value)?;
                matches!(ty, StaticType::Array(_))
            }
            _ => {
                for arg in rest {
                    self.expr(&arg.value)?;
                }
                false
            }
        };
        if !single_array {
            self.emit(Op::MakeArray(u16::try_from(rest.len()).unwrap_or(u16::MAX)));
        }
        self.call(Builtin::StrFormat, 2, span)?;
        Ok(StaticType::String)
    }

    fn string_join(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 2, usize::MAX, "string.Join", span)?;
        self.expect_plain(args, "string.Join")?;
        self.argument(&args[0], Param::Str, "string.Join")?;
        let rest = &args[1..];
        let sequence = match rest {
            [only] => {
                let ty = self.expr(&only.value)?;
                ty.is_dynamic() || ty.element().is_some() && !matches!(ty, StaticType::String | StaticType::JToken)
            }
            _ => {
                for arg in rest {
                    self.expr(&arg.value)?;
                }
                false
            }
        };
        if !sequence {
            self.emit(Op::MakeArray(u16::try_from(rest.len()).unwrap_or(u16::MAX)));
        }
        self.call(Builtin::StrJoin, 2, span)?;
        Ok(StaticType::String)
    }

    /// `int.TryParse(s, out var x)`: `IntTryParse(s)` is the int or null; `x` gets it (0 when
    /// null) and the expression is whether it parsed.
    fn int_try_parse(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 2, 2, "int.TryParse", span)?;
        let [input, out] = args else { return error(span, "int.TryParse takes 2 arguments") };
        if input.out.is_some() || input.name.is_some() {
            return error(input.value.span, "the first argument of int.TryParse is the string to parse");
        }
        self.argument(input, Param::Str, "int.TryParse")?;
        self.call(Builtin::IntTryParse, 1, span)?;
        let slot = self.out_slot(out, StaticType::Int, "int.TryParse")?;
        let parsed = self.code.label();
        let end = self.code.label();
        self.jump(Op::JumpIfNotNull(0), parsed);
        self.emit(Op::Pop);
        self.emit(Op::Int(0));
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Bool(false));
        self.jump(Op::Jump(0), end);
        self.code.place(parsed);
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Bool(true));
        self.code.place(end);
        Ok(StaticType::Bool)
    }

    /// `double.TryParse(s, out var x)` (and `bool`, `DateTime`, `Guid`): the parse inside a
    /// `try` handler; on failure `x` gets the type's default and the expression is false.
    fn try_parse(&mut self, class: &str, args: &[Arg], span: Span) -> R<StaticType> {
        let what = format!("{class}.TryParse");
        self.expect_args(args, 2, 2, &what, span)?;
        let [input, out] = args else { return error(span, format!("{what} takes 2 arguments")) };
        if input.out.is_some() || input.name.is_some() {
            return error(input.value.span, format!("the first argument of {what} is the string to parse"));
        }
        let (parse, ty) = match class {
            "double" => (Builtin::DoubleParse, StaticType::Double),
            "bool" => (Builtin::BoolParse, StaticType::Bool),
            "DateTime" => (Builtin::DateTimeParse, StaticType::DateTime),
            _ => (Builtin::GuidParse, StaticType::Guid),
        };
        let slot = self.out_slot(out, ty.clone(), &what)?;
        let failed = self.code.label();
        let end = self.code.label();
        self.jump(Op::TryEnter { handler: 0 }, failed);
        self.argument(input, Param::Str, &what)?;
        self.call(parse, 1, span)?;
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::TryExit);
        self.emit(Op::Bool(true));
        self.jump(Op::Jump(0), end);
        self.code.place(failed);
        self.emit(Op::Pop);
        match ty {
            StaticType::Double => self.push_const(Const::Double(0.0)),
            StaticType::Bool => self.emit(Op::Bool(false)),
            StaticType::DateTime => {
                for part in [1, 1, 1, 0, 0, 0, 0] {
                    self.emit(Op::Int(part));
                }
                self.call(Builtin::DateTimeNew, 7, span)?;
            }
            _ => {
                self.code.push_str("00000000-0000-0000-0000-000000000000");
                self.call(Builtin::GuidParse, 1, span)?;
            }
        }
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Bool(false));
        self.code.place(end);
        Ok(StaticType::Bool)
    }

    /// `Regex.IsMatch(input, pattern[, options[, timeout]])` and friends.
    fn regex_static(&mut self, method: &str, args: &[Arg], span: Span) -> R<StaticType> {
        let what = format!("Regex.{method}");
        self.expect_plain(args, &what)?;
        let fixed = if method == "Replace" { 3 } else { 2 };
        self.expect_args(args, fixed, fixed + 2, &what, span)?;
        // The positional arguments: input, pattern, [replacement], [options], [timeout (dropped:
        // the VM's step and time limits bound every match)].
        let pattern = &args[1].value;
        let options = args.get(fixed).map(|a| &a.value);
        if let Some(ExprKind::Lambda { .. }) = args.get(2).map(|a| &a.value.kind) {
            return error(args[2].value.span, "Regex.Replace with a MatchEvaluator lambda is not supported");
        }
        self.argument(&args[0], Param::Str, &what)?;
        let options_consumed = self.regex_pattern(pattern, options)?;
        let mut argc = 2;
        if method == "Replace" {
            self.argument(&args[2], Param::Str, &what)?;
            argc += 1;
        }
        if let (false, Some(options)) = (options_consumed, options) {
            // Options only known at run time follow the other arguments (the VM recompiles).
            let ty = self.expr(options)?;
            self.expect_type(&ty, &StaticType::Enum(EnumType::RegexOptions), options.span, "the RegexOptions")?;
            argc += 1;
        }
        let (builtin, ty) = match method {
            "IsMatch" => (Builtin::RegexIsMatch, StaticType::Bool),
            "Match" => (Builtin::RegexMatch, StaticType::Match),
            "Matches" => (Builtin::RegexMatches, StaticType::array_of(StaticType::Match)),
            "Split" => (Builtin::RegexSplit, StaticType::array_of(StaticType::String)),
            _ => (Builtin::RegexReplace, StaticType::String),
        };
        self.call(builtin, argc, span)?;
        Ok(ty)
    }

    /// Pushes a regex pattern: a literal becomes a checked [`Const::Regex`] with constant options
    /// folded in. Returns whether the options were consumed (folded, or absent); if not, the
    /// caller pushes them after its other arguments.
    pub(super) fn regex_pattern(&mut self, pattern: &Expr, options: Option<&Expr>) -> R<bool> {
        let constant_options = match options {
            None => Some(0),
            Some(o) => constant_int(self, o).map(|(v, _)| v),
        };
        if let ExprKind::Str(text) = &pattern.kind {
            // With run-time options the literal is still translated and checked, without them.
            let translated = dotnet_regex::translate(text, constant_options.unwrap_or(0))
                .or_else(|message| error(pattern.span, message))?;
            self.push_const(Const::Regex { pattern: translated.pattern, ignore_case: translated.ignore_case });
            return Ok(constant_options.is_some());
        }
        // A pattern only known at run time: the VM compiles it (its syntax is not checked here).
        let ty = self.expr(pattern)?;
        self.expect_type(&ty, &StaticType::String, pattern.span, "a regex pattern")?;
        Ok(constant_options == Some(0))
    }
}

pub(super) fn hash_kind(class: &str) -> HashKind {
    match class {
        "SHA1" | "HMACSHA1" | "SHA1Managed" => HashKind::Sha1,
        "SHA512" | "HMACSHA512" | "SHA512Managed" => HashKind::Sha512,
        "MD5" => HashKind::Md5,
        _ => HashKind::Sha256,
    }
}

impl StaticType {
    pub(super) fn element_or_object(&self) -> StaticType {
        self.element().unwrap_or(StaticType::Object)
    }
}
