//! The compiler of APIM policy expressions (`@(...)` and `@{...}`) to VM ops. Sans-IO.
//!
//! Pipeline: `lexer` (tokens with byte offsets) → `syntax` (the AST of the C# subset) →
//! `lower` (type-checks against `types` and emits ops into the section's
//! [`CodeBuilder`]). An expression leaves exactly one value on the stack; a block's `return`s
//! store into a result local that is loaded at the block's end, so the stack is empty at every
//! statement boundary inside it. LINQ lambdas are lowered into loops over iterator locals
//! (the VM has no closures), and regex literals are translated from .NET syntax and checked
//! here (see `dotnet_regex`).
//!
//! Named values (`{{x}}`) are substituted by the caller before compiling; the caller also maps
//! [`ExprError::offset`] to a file position.
//!
//! Supported (apim-reference §2.3 and more): literals (int/long/double/char, regular, verbatim and
//! interpolated strings with `{x:format}`), arithmetic, comparisons, `&&`/`||`, `?:`, `??`,
//! `?.`/`?[`, casts, `as`, `is` (with a binding), indexers, `new` for JSON values, lists, arrays,
//! `Regex`, hash algorithms; the whole `context` graph; string, dictionary, sequence, JSON, date,
//! body (`As<T>`), JWT and Basic methods; static `string`, `int`, `Convert`, `Math`, `Encoding`,
//! `WebUtility`, `Uri`, `Regex`, `DateTime`/`DateTimeOffset`, `TimeSpan`, `Guid`, `JObject`,
//! `JsonConvert`, `Array`, `SHA*`/`MD5`, `BitConverter` members; LINQ with lambdas (Any, All,
//! Where, Select, First, FirstOrDefault, Last, Single, Min, Max, Average, Count, Sum, OrderBy, index
//! overloads); `out` arguments of `int.TryParse`, `TryParseJwt`, `TryParseBasic`, `TryGetValue`;
//! blocks with typed, `var` and `const` locals, local functions (inlined at each call), assignments
//! (locals, JSON, array, list and dictionary elements), `++`/`--`, `if`, `foreach`, `for`, `while`,
//! `do`, `switch`, `break`, `continue`, `using`, `return`, `try`/`catch`/`finally` and `throw` (the
//! VM's `TryEnter` handlers; every failure goes to the first `catch`); anonymous objects
//! (JObjects), sized arrays, dictionary initializers, `new DateTime`/`DateTimeOffset`/`TimeSpan`,
//! `Uri`, `StringBuilder` (a list of pieces), `Random`, exceptions (their message) — see
//! `lower/objects`; `List<T>` mutators, `ElementAtOrDefault`/`DefaultIfEmpty`, `IUrl.ToUri()`,
//! `context.Deployment.Gateway`, APIM's extension methods through `ExpressionSyntaxExtensions`,
//! `new HMACSHA256 { Key = k }`.
//!
//! Refused with a message naming the construct: XML (`XElement`, ...), exception filters, pattern
//! cases, lambdas with block bodies or outside LINQ calls, recursive local functions, regex
//! lookaround/backreferences/atomic groups, `typeof`/`default`/`nameof`, object initializers that
//! set other properties, types outside the allow-list. Bitwise operators and shifts are builtins
//! (`BitAnd` ... `ShiftLeft`), narrowing casts `IntNarrow`.

mod dotnet_regex;
mod lexer;
mod lower;
mod syntax;
mod types;

use super::code::CodeBuilder;
use lexer::Span;
pub use types::{ContextObject, EnumType, HashKind, StaticType};

/// Where an expression's value goes, for compile-time type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any value (`set-body`, `set-variable`).
    Any,
    /// A string (header values, keys, URLs): `object`, `null` and JSON values pass (the VM
    /// checks them); other known types are refused with a hint to call `.ToString()`.
    String,
    /// A bool (`when condition`, `retry condition`).
    Bool,
    /// An integer (status codes, counts).
    Int,
}

/// A compile error in an expression, located by byte offset into the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset of the offending text in the `source` given to [`compile`].
    pub offset: usize,
    /// Length in bytes of the offending text (at least 1).
    pub len: usize,
    pub message: String,
}

impl ExprError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> Self {
        Self { offset: span.start, len: span.end.saturating_sub(span.start).max(1), message: message.into() }
    }
}

/// Compiles `source` (the whole attribute or text value: `@( expr )` or `@{ statements }`)
/// into `code`. The emitted ops leave exactly one value on the stack; returns its static type.
///
/// On error, `code` may hold a partial emission: the caller drops the builder (a policy
/// document with an error compiles to nothing).
pub fn compile(code: &mut CodeBuilder, source: &str, expect: Expect) -> Result<StaticType, ExprError> {
    let parsed = syntax::parse(source)?;
    let (ty, span) = lower::lower(code, source, &parsed)?;
    check_expected(&ty, expect, span)?;
    Ok(ty)
}

/// Whether an attribute or text value is a policy expression rather than a literal.
pub fn is_expression(text: &str) -> bool {
    let text = text.trim_start();
    text.starts_with("@(") || text.starts_with("@{")
}

/// Whether byte `offset` of the expression `text` is inside a C# string or character literal
/// (interpolated strings count as literals, holes included).
pub fn in_string_literal(text: &str, offset: usize) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < offset.min(bytes.len()) {
        match bytes[i] {
            b'"' => {
                let verbatim =
                    i > 0 && (bytes[i - 1] == b'@' || (bytes[i - 1] == b'$' && i > 1 && bytes[i - 2] == b'@'));
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return true,
                        Some(b'\\') if !verbatim => j += 2,
                        Some(b'"') if verbatim && bytes.get(j + 1) == Some(&b'"') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                if offset <= j {
                    return true;
                }
                i = j + 1;
            }
            b'\'' => {
                let close = text[i + 1..].find('\'').map_or(bytes.len(), |at| i + 1 + at);
                let close = if bytes.get(i + 1) == Some(&b'\\') && close == i + 2 {
                    text[i + 3..].find('\'').map_or(bytes.len(), |at| i + 3 + at)
                } else {
                    close
                };
                if offset <= close {
                    return true;
                }
                i = close + 1;
            }
            _ => i += 1,
        }
    }
    false
}

fn check_expected(ty: &StaticType, expect: Expect, span: Span) -> Result<(), ExprError> {
    use StaticType as T;
    let ok = match expect {
        Expect::Any => true,
        _ if ty.is_dynamic() => true,
        Expect::Bool => matches!(ty, T::Bool),
        Expect::Int => matches!(ty, T::Int | T::JToken),
        Expect::String => matches!(ty, T::String | T::Char | T::JToken | T::JObject | T::JArray | T::JProperty),
    };
    if ok {
        return Ok(());
    }
    let wanted = match expect {
        Expect::Bool => "bool",
        Expect::Int => "int",
        _ => "string",
    };
    let mut message = format!("this expression must produce a {wanted}, but it produces {ty}");
    if expect == Expect::String {
        message.push_str(" (call `.ToString()` to convert it)");
    }
    Err(ExprError::new(span, message))
}

#[cfg(test)]
mod tests;
