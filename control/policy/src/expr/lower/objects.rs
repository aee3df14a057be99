//! The .NET objects whose run-time value is something simpler: exceptions (their message),
//! anonymous objects (a JObject), `Uri` (its string), `StringBuilder` (a list of pieces) and
//! `Random` (no value) — their creation, members and methods — plus sized arrays and `throw`.

use portcullis_contract::program::{Builtin, Const, Op, Prop, URI_PARTS};

use super::super::lexer::Span;
use super::super::syntax::{Arg, Expr, TypeName};
use super::super::types::{self, EnumType, Param, StaticType};
use super::{Lowerer, R, error};

/// What `StringBuilder.AppendLine` ends a line with (`Environment.NewLine` of the Linux
/// self-hosted gateway).
const NEW_LINE: &str = "\n";

/// The largest `new byte[n]`: a buffer or an IV, never a payload.
const BYTES_NEW_MAX: usize = 65_536;

impl Lowerer<'_> {
    /// `receiver.name` on the types of this file; `None` for other receivers.
    pub(super) fn object_member(
        &mut self,
        receiver: &StaticType,
        name: &str,
        name_span: Span,
        span: Span,
    ) -> R<Option<StaticType>> {
        let ty = match (receiver, name) {
            (StaticType::Exception, "Message") => StaticType::String,
            (StaticType::Exception, _) => {
                return error(name_span, format!("`{}`: an exception only has `Message` here", self.quote(span)));
            }
            (StaticType::Anonymous(members), _) => {
                let Some((_, ty)) = members.iter().find(|(member, _)| member == name) else {
                    return error(name_span, format!("`{}`: {receiver} has no member `{name}`", self.quote(span)));
                };
                let ty = ty.clone();
                self.code.push_str(name);
                self.emit(Op::Index);
                match ty {
                    StaticType::String | StaticType::Int | StaticType::Double | StaticType::Bool => {
                        if let Some(vt) = types::value_type(&ty) {
                            self.emit(Op::Cast(vt));
                        }
                        ty
                    }
                    StaticType::JObject | StaticType::JArray | StaticType::JToken | StaticType::Anonymous(_) => ty,
                    _ => StaticType::Object,
                }
            }
            (StaticType::Uri, _) => {
                let Some(part) = URI_PARTS.iter().position(|part| *part == name) else {
                    return error(
                        name_span,
                        format!(
                            "`{}`: Uri has no supported member `{name}` ({})",
                            self.quote(span),
                            URI_PARTS.join(", ")
                        ),
                    );
                };
                self.code.push_int(part as i64);
                self.call(Builtin::UriPart, 2, span)?;
                match name {
                    "Port" => StaticType::Int,
                    "Segments" => StaticType::array_of(StaticType::String),
                    _ => StaticType::String,
                }
            }
            (StaticType::StringBuilder, "Length") => {
                self.call(Builtin::StrConcat, 1, span)?;
                self.emit(Op::Prop(Prop::Length));
                StaticType::Int
            }
            (StaticType::StringBuilder | StaticType::Random, _) => {
                return error(name_span, format!("`{}`: {receiver} has no readable member `{name}`", self.quote(span)));
            }
            _ => return Ok(None),
        };
        Ok(Some(ty))
    }

    /// `receiver.name(args)` on the types of this file (the receiver is on the stack); `None`
    /// for other receivers.
    pub(super) fn object_method(
        &mut self,
        receiver: &StaticType,
        name: &str,
        args: &[Arg],
        span: Span,
    ) -> R<Option<StaticType>> {
        let what = format!("{receiver}.{name}");
        let ty = match (receiver, name) {
            (StaticType::StringBuilder, "Append") => {
                self.expect_args(args, 1, 1, &what, span)?;
                self.argument(&args[0], Param::Any, &what)?;
                self.call(Builtin::BuilderAppend, 2, span)?;
                StaticType::StringBuilder
            }
            (StaticType::StringBuilder, "AppendLine") => {
                self.expect_args(args, 0, 1, &what, span)?;
                if let Some(arg) = args.first() {
                    self.argument(arg, Param::Any, &what)?;
                    self.call(Builtin::BuilderAppend, 2, span)?;
                }
                self.code.push_str(NEW_LINE);
                self.call(Builtin::BuilderAppend, 2, span)?;
                StaticType::StringBuilder
            }
            (StaticType::StringBuilder, "AppendFormat") => {
                self.string_format(args, span)?;
                self.call(Builtin::BuilderAppend, 2, span)?;
                StaticType::StringBuilder
            }
            (StaticType::StringBuilder, "ToString") => {
                self.expect_args(args, 0, 0, &what, span)?;
                self.call(Builtin::StrConcat, 1, span)?;
                StaticType::String
            }
            (StaticType::StringBuilder, _) => {
                return error(
                    span,
                    format!(
                        "StringBuilder has no supported method `{name}` (Append, AppendLine, AppendFormat, ToString)"
                    ),
                );
            }
            (StaticType::Random, "Next") => {
                self.expect_args(args, 0, 2, &what, span)?;
                self.emit(Op::Pop);
                if args.len() < 2 {
                    self.emit(Op::Int(0));
                }
                for arg in args {
                    self.argument(arg, Param::Int, &what)?;
                }
                if args.is_empty() {
                    self.code.push_int(i64::from(i32::MAX));
                }
                self.call(Builtin::RandomNext, 2, span)?;
                StaticType::Int
            }
            (StaticType::Random, "NextDouble") => {
                self.expect_args(args, 0, 0, &what, span)?;
                self.emit(Op::Pop);
                self.call(Builtin::RandomNextDouble, 0, span)?;
                StaticType::Double
            }
            (StaticType::Random, _) => {
                return error(span, format!("Random has no supported method `{name}` (Next, NextDouble)"));
            }
            _ => return Ok(None),
        };
        Ok(Some(ty))
    }

    /// `new Exception(..)`, `new Uri(s)`, `new StringBuilder(..)`, `new Random(..)`,
    /// `new DateTime(..)`, `new DateTimeOffset(..)`, `new TimeSpan(..)`; `None` for other types.
    pub(super) fn object_creation(&mut self, ty: &TypeName, args: &[Arg], span: Span) -> R<Option<StaticType>> {
        let written = ty.name.rsplit('.').next().unwrap_or(&ty.name);
        let what = format!("new {written}");
        let result = match written {
            exception if exception.ends_with("Exception") => {
                self.expect_args(args, 0, 2, &what, span)?;
                match args.first() {
                    Some(message) => {
                        self.argument(message, Param::Str, &what)?;
                    }
                    None => self.emit(Op::Null),
                }
                if let Some(inner) = args.get(1) {
                    self.argument(inner, Param::Any, &what)?;
                    self.emit(Op::Pop);
                }
                StaticType::Exception
            }
            "Uri" => {
                self.expect_args(args, 1, 1, &what, span)?;
                self.argument(&args[0], Param::Str, &what)?;
                self.call(Builtin::UriNew, 1, span)?;
                StaticType::Uri
            }
            "StringBuilder" => {
                self.expect_args(args, 0, 1, &what, span)?;
                self.call(Builtin::ListNew, 0, span)?;
                if let Some(arg) = args.first() {
                    match self.argument(arg, Param::Any, &what)? {
                        // `new StringBuilder(capacity)`: nothing to append.
                        StaticType::Int => self.emit(Op::Pop),
                        _ => self.call(Builtin::BuilderAppend, 2, span)?,
                    }
                }
                StaticType::StringBuilder
            }
            "Random" => {
                // A seed would make the sequence repeat; the VM's numbers come from the OS.
                self.expect_args(args, 0, 1, &what, span)?;
                if let Some(seed) = args.first() {
                    self.argument(seed, Param::Int, &what)?;
                    self.emit(Op::Pop);
                }
                self.emit(Op::Null);
                StaticType::Random
            }
            "DateTime" | "DateTimeOffset" => return self.new_date(written, args, span).map(Some),
            "AesManaged" | "AesCryptoServiceProvider" | "RijndaelManaged" => {
                self.expect_args(args, 0, 0, &what, span)?;
                self.code.push_str("Aes");
                StaticType::SymmetricAlgorithm
            }
            "TimeSpan" => {
                self.new_time_span(args, span)?;
                StaticType::TimeSpan
            }
            _ => return Ok(None),
        };
        Ok(Some(result))
    }

    /// `new DateTime(y, M, d[, h, m, s[, ms]][, DateTimeKind])` and `new DateTimeOffset(y, M,
    /// d, h, m, s[, ms], offset)` (the instant, in UTC), `new DateTimeOffset(dateTime)`.
    fn new_date(&mut self, written: &str, args: &[Arg], span: Span) -> R<StaticType> {
        let what = format!("new {written}");
        self.expect_plain(args, &what)?;
        if written == "DateTimeOffset" && args.len() == 1 {
            let ty = self.expr(&args[0].value)?;
            self.expect_type(&ty, &StaticType::DateTime, args[0].value.span, "the argument")?;
            return Ok(StaticType::DateTime);
        }
        let mut parts: &[Arg] = args;
        let mut offset = None;
        if written == "DateTimeOffset" {
            let Some((last, rest)) = args.split_last() else {
                return error(span, "`new DateTimeOffset` takes (y, M, d, h, m, s[, ms], offset) or (dateTime)");
            };
            offset = Some(last);
            parts = rest;
        } else if let Some((last, rest)) = args.split_last() {
            let kind = super::statics::constant_int(self, &last.value);
            if matches!(kind, Some((_, StaticType::Enum(EnumType::DateTimeKind)))) {
                // Every DateTime is UTC here; the kind changes nothing.
                parts = rest;
            }
        }
        if !matches!(parts.len(), 3 | 6 | 7) {
            return error(span, format!("`{what}` takes year, month, day[, hour, minute, second[, millisecond]]"));
        }
        for part in parts {
            self.argument(part, Param::Int, &what)?;
        }
        for _ in parts.len()..7 {
            self.emit(Op::Int(0));
        }
        self.call(Builtin::DateTimeNew, 7, span)?;
        if let Some(offset) = offset {
            // Local time at `offset` → the UTC instant: subtract the offset.
            let ty = self.expr(&offset.value)?;
            self.expect_type(&ty, &StaticType::TimeSpan, offset.value.span, "the offset")?;
            self.emit(Op::Sub);
        }
        Ok(StaticType::DateTime)
    }

    /// `new TimeSpan(h, m, s)`, `(d, h, m, s)`, `(d, h, m, s, ms)` and `(ticks)`.
    fn new_time_span(&mut self, args: &[Arg], span: Span) -> R<()> {
        self.expect_plain(args, "new TimeSpan")?;
        let (factors, builtin): (&[i64], Builtin) = match args.len() {
            1 => {
                self.argument(&args[0], Param::Int, "new TimeSpan")?;
                self.push_const(Const::Double(10_000.0));
                self.emit(Op::Div);
                self.call(Builtin::TimeSpanFromMilliseconds, 1, span)?;
                return Ok(());
            }
            3 => (&[3_600_000, 60_000, 1000], Builtin::TimeSpanFromMilliseconds),
            4 => (&[86_400_000, 3_600_000, 60_000, 1000], Builtin::TimeSpanFromMilliseconds),
            5 => (&[86_400_000, 3_600_000, 60_000, 1000, 1], Builtin::TimeSpanFromMilliseconds),
            _ => return error(span, "`new TimeSpan` takes (ticks), (h, m, s), (d, h, m, s) or (d, h, m, s, ms)"),
        };
        for (i, (arg, factor)) in args.iter().zip(factors).enumerate() {
            self.argument(arg, Param::Int, "new TimeSpan")?;
            self.code.push_int(*factor);
            self.emit(Op::Mul);
            if i > 0 {
                self.emit(Op::Add);
            }
        }
        self.call(builtin, 1, span)
    }

    /// `new T[n]`: n elements of T's default (0, false, null).
    pub(super) fn new_sized_array(&mut self, element: &TypeName, size: &Expr, span: Span) -> R<StaticType> {
        let ty = self.resolve_type(element)?;
        if types::normalize_type_name(&element.name) == "byte" && element.array_rank == 0 {
            // `new byte[16]` (a zero IV, a buffer): a constant of n zero bytes.
            let n = match size.kind {
                super::super::syntax::ExprKind::Int(n) => usize::try_from(n).ok().filter(|n| *n <= BYTES_NEW_MAX),
                _ => None,
            };
            let Some(n) = n else {
                return error(size.span, format!("`new byte[n]` needs a constant size up to {BYTES_NEW_MAX}"));
            };
            self.push_bytes(&vec![0; n], span)?;
            return Ok(StaticType::Bytes);
        }
        let size_ty = self.expr(size)?;
        if !size_ty.is_dynamic() && !matches!(size_ty, StaticType::Int | StaticType::JToken) {
            return error(size.span, format!("an array size must be an int, not {size_ty}"));
        }
        self.push_default(&ty);
        self.call(Builtin::ArrayNew, 2, span)?;
        Ok(StaticType::array_of(ty))
    }

    /// Pushes `default(T)`: 0, false, `'\0'`, or null for reference types.
    pub(super) fn push_default(&mut self, ty: &StaticType) {
        match ty {
            StaticType::Int | StaticType::Enum(_) => self.emit(Op::Int(0)),
            StaticType::Double => self.push_const(Const::Double(0.0)),
            StaticType::Bool => self.emit(Op::Bool(false)),
            StaticType::Char => self.code.push_str("\0"),
            _ => self.emit(Op::Null),
        }
    }

    /// Pushes constant bytes (a base64 string constant, decoded by the VM).
    pub(super) fn push_bytes(&mut self, bytes: &[u8], span: Span) -> R<()> {
        use base64::Engine as _;
        self.code.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        self.call(Builtin::ConvertFromBase64String, 1, span)
    }

    /// `new byte[] { 1, 2 }` of constants: a `byte[]` value; `None` when an item is not a
    /// constant byte (the caller builds an array then).
    pub(super) fn constant_bytes(&mut self, items: &[Expr], span: Span) -> R<Option<StaticType>> {
        let mut bytes = Vec::with_capacity(items.len());
        for item in items {
            match item.kind {
                super::super::syntax::ExprKind::Int(n) => match u8::try_from(n) {
                    Ok(byte) => bytes.push(byte),
                    Err(_) => return error(item.span, format!("{n} does not fit in a byte")),
                },
                _ => return Ok(None),
            }
        }
        self.push_bytes(&bytes, span)?;
        Ok(Some(StaticType::Bytes))
    }

    /// `new { a = 1, b }`: a JObject with the members in order.
    pub(super) fn new_anonymous(&mut self, members: &[(String, Span, Expr)], span: Span) -> R<StaticType> {
        self.call(Builtin::JObjectNew, 0, span)?;
        let object = self.temp();
        self.emit(Op::StoreLocal(object));
        let mut types = Vec::with_capacity(members.len());
        for (name, _, value) in members {
            self.emit(Op::LoadLocal(object));
            self.code.push_str(name);
            let ty = self.expr(value)?;
            if matches!(ty, StaticType::Context(_) | StaticType::Regex | StaticType::Hasher(_) | StaticType::Random) {
                return error(value.span, format!("{ty} cannot be a member of an anonymous object here"));
            }
            self.call(Builtin::JSet, 3, span)?;
            self.emit(Op::Pop);
            types.push((name.clone(), if ty == StaticType::Null { StaticType::Object } else { ty }));
        }
        self.emit(Op::LoadLocal(object));
        Ok(StaticType::Anonymous(types))
    }

    /// `throw e` (expression or statement): the exception's message, then [`Op::Throw`].
    pub(super) fn throw_value(&mut self, operand: &Expr) -> R<()> {
        let ty = self.expr(operand)?;
        if !ty.is_dynamic() && !matches!(ty, StaticType::Exception | StaticType::String) {
            return error(operand.span, format!("`throw` needs an exception, not {ty}"));
        }
        self.emit(Op::Throw);
        Ok(())
    }
}
