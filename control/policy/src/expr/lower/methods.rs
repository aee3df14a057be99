//! Instance method calls: `receiver.Method(args)` with the receiver already on the stack.
//!
//! Most methods are one builtin (see [`types::METHODS`]); the ones here need more: generic
//! arguments (`As<JObject>()`, `GetValueOrDefault<string>()`, `Value<T>()`), `out` arguments
//! (`TryGetValue`, `TryParseJwt`), `params` arrays (`Split`, `Trim`), receivers that have no
//! run-time value (`SHA256.Create().ComputeHash(..)`) or go last (`regex.IsMatch(input)`).

use portcullis_contract::program::{Builtin, Op, Prop, ValueType};

use super::super::lexer::Span;
use super::super::syntax::{Arg, ExprKind, OutTarget, TypeName};
use super::super::types::{self, ContextObject, Param, StaticType};
use super::statics::constant_int;
use super::{Lowerer, R, error};

/// The Unix epoch, as `DateTimeParse` reads it.
const UNIX_EPOCH: &str = "1970-01-01T00:00:00Z";

impl Lowerer<'_> {
    /// Lowers `receiver.name<type_args>(args)`; the receiver's value is on the stack.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn method_call(
        &mut self,
        receiver: &StaticType,
        target_span: Span,
        name: &str,
        name_span: Span,
        type_args: &[TypeName],
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        use StaticType as T;
        if args.iter().any(|a| matches!(a.value.kind, ExprKind::Lambda { .. })) {
            return self.linq(receiver, target_span, name, args, span);
        }
        if let Some(ty) = self.object_method(receiver, name, args, span)? {
            return Ok(ty);
        }
        let dynamic = receiver.is_dynamic();
        let json = matches!(receiver, T::JObject | T::JArray | T::JToken | T::JProperty);
        match name {
            "GetValueOrDefault" if dynamic || matches!(receiver, T::Dictionary(_)) => {
                return self.get_value_or_default(receiver, type_args, args, span);
            }
            "TryGetValue" if dynamic || matches!(receiver, T::Dictionary(_) | T::JObject) => {
                return self.try_get_value(receiver, args, span);
            }
            "TryParseJwt" | "TryParseBasic" if dynamic || matches!(receiver, T::String) => {
                return self.try_parse_credentials(name, args, span);
            }
            "As" if dynamic || *receiver == T::Context(ContextObject::MessageBody) => {
                return self.body_as(type_args, args, span);
            }
            "AsFormUrlEncodedContent" if dynamic || *receiver == T::Context(ContextObject::MessageBody) => {
                self.preserve_content(args, "AsFormUrlEncodedContent", span)?;
                self.call(Builtin::BodyAsForm, 2, span)?;
                return Ok(T::multi_value_dictionary());
            }
            "Value" | "ToObject" if dynamic || json => return self.json_value(name, type_args, args, span),
            "Split" if dynamic || matches!(receiver, T::String) => return self.split(args, span),
            "Trim" | "TrimStart" | "TrimEnd" if !args.is_empty() && (dynamic || matches!(receiver, T::String)) => {
                return self.trim_chars(name, args, span);
            }
            "Children" if json && args.is_empty() => {
                // A JObject's children are its properties; a JArray's, its items.
                let builtin = if *receiver == T::JObject { Builtin::JObjectProperties } else { Builtin::SeqToArray };
                self.call(builtin, 1, span)?;
                return Ok(if *receiver == T::JObject { T::array_of(T::JProperty) } else { T::array_of(T::JToken) });
            }
            "ToString" if json && args.len() == 1 => return self.json_to_string(args, span),
            "ToString" if args.is_empty() && *receiver == T::Enum(types::EnumType::JTokenType) => {
                // The member's name, as .NET prints an enum.
                let value = self.temp();
                self.emit(Op::StoreLocal(value));
                for name in portcullis_contract::program::JTOKEN_TYPES {
                    self.code.push_str(name);
                }
                self.emit(Op::MakeArray(portcullis_contract::program::JTOKEN_TYPES.len() as u16));
                self.emit(Op::LoadLocal(value));
                self.emit(Op::Index);
                return Ok(T::String);
            }
            "ComputeHash" => return self.compute_hash(receiver, target_span, args, span),
            "GetValue" if dynamic || json => {
                // `obj.GetValue(name)` is the indexer.
                self.expect_args(args, 1, 1, "GetValue", span)?;
                self.argument(&args[0], Param::Any, "GetValue")?;
                self.emit(Op::Index);
                return Ok(T::JToken);
            }
            "ToUnixTimeSeconds" | "ToUnixTimeMilliseconds" if dynamic || *receiver == T::DateTime => {
                self.expect_args(args, 0, 0, name, span)?;
                return self.unix_time(name == "ToUnixTimeSeconds", span);
            }
            "ElementAt" if dynamic || receiver.element().is_some() => {
                self.expect_args(args, 1, 1, "ElementAt", span)?;
                self.argument(&args[0], Param::Int, "ElementAt")?;
                self.emit(Op::Index);
                return Ok(receiver.element_or_object());
            }
            "ElementAtOrDefault" if dynamic || receiver.element().is_some() => {
                self.expect_args(args, 1, 1, name, span)?;
                self.argument(&args[0], Param::Int, name)?;
                let element = receiver.element_or_object();
                self.push_default(&element);
                self.call(Builtin::SeqElementAtOrDefault, 3, span)?;
                return Ok(element);
            }
            "DefaultIfEmpty" if dynamic || receiver.element().is_some() => {
                self.expect_args(args, 0, 1, name, span)?;
                let element = receiver.element_or_object();
                match args.first() {
                    Some(value) => {
                        let ty = self.argument(value, Param::Any, name)?;
                        self.expect_type(&ty, &element, value.value.span, "the default")?;
                    }
                    None => self.push_default(&element),
                }
                self.call(Builtin::SeqDefaultIfEmpty, 2, span)?;
                return Ok(T::array_of(element));
            }
            "ToUri" if dynamic || *receiver == T::Context(ContextObject::Url) => {
                // `IUrl.ToUri()`: a `System.Uri` of the whole URL, whose value is its string.
                self.expect_args(args, 0, 0, name, span)?;
                self.emit(Op::Prop(Prop::AbsoluteUrl));
                return Ok(T::Uri);
            }
            "ToString" if args.is_empty() && *receiver == T::Context(ContextObject::Url) => {
                self.emit(Op::Prop(Prop::AbsoluteUrl));
                return Ok(T::String);
            }
            "Add" if matches!(receiver, T::Dictionary(_)) && args.len() == 2 => {
                self.argument(&args[0], Param::Str, "Add")?;
                self.argument(&args[1], Param::Any, "Add")?;
                self.call(Builtin::ElementSet, 3, span)?;
                return Ok(T::Object);
            }
            "Trace" if *receiver == T::Context(ContextObject::Context) => {
                self.expect_args(args, 1, 1, "context.Trace", span)?;
                self.argument(&args[0], Param::Str, "context.Trace")?;
                self.call(Builtin::ContextTrace, 2, span)?;
                return Ok(T::Object);
            }
            _ if *receiver == T::Regex => return self.regex_instance(name, args, span),
            _ => {}
        }
        if !type_args.is_empty() {
            return error(name_span, format!("`{name}` takes no type arguments"));
        }
        self.table_method(receiver, target_span, name, name_span, args, span)
    }

    fn table_method(
        &mut self,
        receiver: &StaticType,
        target_span: Span,
        name: &str,
        name_span: Span,
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        let candidates = types::methods(receiver, name, args.len());
        let what = format!("{}.{name}", self.quote(target_span));
        let Some(method) = candidates.first().copied() else {
            let arities: Vec<usize> = types::METHODS
                .iter()
                .filter(|m| m.name == name && (receiver.is_dynamic() || m.on.accepts(receiver)))
                .map(|m| m.params.len())
                .collect();
            if !arities.is_empty() {
                let list: Vec<String> = arities.iter().map(usize::to_string).collect();
                return error(span, format!("`{what}` takes {} argument(s), not {}", list.join(" or "), args.len()));
            }
            let mut message = format!("`{what}`: {receiver} has no method `{name}`");
            if let Some((_, property)) = types::member(receiver, name).ok().filter(|_| !receiver.is_dynamic()) {
                // `context.Request.MatchedParameters("id")`: a property called like a method.
                message = format!("`{what}` is a property of type {property}, not a method");
                if property.indexer().is_some() {
                    message.push_str(&format!(": index it (`{what}[..]`) or call `{what}.GetValueOrDefault(..)`"));
                }
                return error(name_span, message);
            }
            if let Some(suggestion) = types::suggest(name, types::method_names(receiver)) {
                message.push_str(&format!(" (did you mean `{suggestion}`?)"));
            }
            return error(name_span, message);
        };
        if receiver.is_dynamic() && candidates.iter().any(|m| m.builtin != method.builtin) {
            return error(
                name_span,
                format!(
                    "`{what}`: the receiver's type is only known at run time and `{name}` is ambiguous; cast it first, e.g. `((string){})`",
                    self.quote(target_span)
                ),
            );
        }
        self.expect_plain(args, &what)?;
        for (arg, param) in args.iter().zip(method.params) {
            self.argument(arg, *param, &what)?;
        }
        self.call(method.builtin, args.len() + 1, span)?;
        Ok(method.ret.resolve(receiver))
    }

    /// `d.GetValueOrDefault(name[, default])` and `GetValueOrDefault<T>(...)`. On variables
    /// (values of type `object`), a typed default infers `T` as C# does, and the typed builtin
    /// fails when the stored value has another type (APIM's behaviour).
    fn get_value_or_default(
        &mut self,
        receiver: &StaticType,
        type_args: &[TypeName],
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        self.expect_args(args, 1, 2, "GetValueOrDefault", span)?;
        self.expect_plain(args, "GetValueOrDefault")?;
        self.argument(&args[0], Param::Str, "GetValueOrDefault")?;
        let explicit = match type_args {
            [] => None,
            [ty] => Some(self.resolve_type(ty)?),
            _ => return error(span, "GetValueOrDefault takes one type argument"),
        };
        let value_ty = match receiver {
            StaticType::Dictionary(v) => (**v).clone(),
            _ => StaticType::Object,
        };
        let multi = value_ty == StaticType::array_of(StaticType::String);
        let default_ty = match args.get(1) {
            Some(default) => Some(self.expr(&default.value)?),
            None => None,
        };
        let inferred = match (&explicit, &default_ty) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(d)) if value_ty == StaticType::Object && !d.is_dynamic() && types::value_type(d).is_some() => {
                Some(if *d == StaticType::Char { StaticType::String } else { d.clone() })
            }
            _ => None,
        };
        if let Some(ty) = inferred {
            if let (Some(d), Some(arg)) = (&default_ty, args.get(1)) {
                if !d.assignable_to(&ty) {
                    return error(arg.value.span, format!("the default is {d}, but the type argument is {ty}"));
                }
            }
            if default_ty.is_none() {
                self.emit(Op::Null);
            }
            self.push_type(&ty, span)?;
            self.call(Builtin::GetValueOrDefaultTyped, 4, span)?;
            return Ok(ty);
        }
        let result = if multi { StaticType::String } else { value_ty };
        match default_ty {
            Some(d) => {
                self.call(Builtin::GetValueOrDefaultWith, 3, span)?;
                Ok(if multi { StaticType::String } else { types::unify(&result, &d) })
            }
            None => {
                self.call(Builtin::GetValueOrDefault, 2, span)?;
                Ok(result)
            }
        }
    }

    /// `d.TryGetValue(key, out v)` → `ContainsKey(d, key) ? (v = d[key], true) : (v = null, false)`.
    fn try_get_value(&mut self, receiver: &StaticType, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 2, 2, "TryGetValue", span)?;
        let (value_ty, contains) = match receiver {
            StaticType::Dictionary(v) => ((**v).clone(), Builtin::ContainsKey),
            StaticType::JObject => (StaticType::JToken, Builtin::JContainsKey),
            _ => (StaticType::Object, Builtin::ContainsKey),
        };
        let dict = self.temp();
        let key = self.temp();
        self.emit(Op::StoreLocal(dict));
        if args[0].out.is_some() {
            return error(args[0].value.span, "the first argument of TryGetValue is the key");
        }
        self.argument(&args[0], Param::Str, "TryGetValue")?;
        self.emit(Op::StoreLocal(key));
        let slot = self.out_slot(&args[1], value_ty, "TryGetValue")?;
        let missing = self.code.label();
        let end = self.code.label();
        self.emit(Op::LoadLocal(dict));
        self.emit(Op::LoadLocal(key));
        self.call(contains, 2, span)?;
        self.jump(Op::JumpIfFalse(0), missing);
        self.emit(Op::LoadLocal(dict));
        self.emit(Op::LoadLocal(key));
        self.emit(Op::Index);
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Bool(true));
        self.jump(Op::Jump(0), end);
        self.code.place(missing);
        self.emit(Op::Null);
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Bool(false));
        self.code.place(end);
        Ok(StaticType::Bool)
    }

    /// `s.TryParseJwt(out var jwt)` → `(jwt = AsJwt(s)) != null` (and `TryParseBasic`).
    fn try_parse_credentials(&mut self, name: &str, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 1, 1, name, span)?;
        let (builtin, ty) = if name == "TryParseJwt" {
            (Builtin::AsJwt, StaticType::Jwt)
        } else {
            (Builtin::AsBasic, StaticType::BasicCredentials)
        };
        let slot = self.out_slot(&args[0], ty, name)?;
        self.call(builtin, 1, span)?;
        self.emit(Op::Dup);
        self.emit(Op::StoreLocal(slot));
        self.emit(Op::Null);
        self.emit(Op::Ne);
        Ok(StaticType::Bool)
    }

    /// The local an `out` argument writes: a new one for `out var x` / `out T x`, an existing one
    /// for `out x`.
    pub(super) fn out_slot(&mut self, arg: &Arg, ty: StaticType, what: &str) -> R<u16> {
        match &arg.out {
            Some(OutTarget::Declare { name, ty: declared }) => {
                let ty = match declared {
                    Some(declared) => {
                        let declared_ty = self.resolve_type(declared)?;
                        if !ty.assignable_to(&declared_ty) {
                            return error(declared.span, format!("{what} produces {ty}, not {declared_ty}"));
                        }
                        declared_ty
                    }
                    None => ty,
                };
                self.declare(name, arg.value.span, ty)
            }
            Some(OutTarget::Assign { name }) => match self.lookup(name) {
                Some(local) => Ok(local.slot),
                None => error(arg.value.span, format!("`{name}` does not exist in the current context")),
            },
            None => error(arg.value.span, format!("this argument of {what} must be `out var name`")),
        }
    }

    /// `body.As<T>(preserveContent: bool)`.
    fn body_as(&mut self, type_args: &[TypeName], args: &[Arg], span: Span) -> R<StaticType> {
        let [ty] = type_args else {
            return error(span, "As needs one type argument, e.g. `As<JObject>()` or `As<string>()`");
        };
        let target = self.resolve_type(ty)?;
        if !matches!(
            target,
            StaticType::String | StaticType::Bytes | StaticType::JObject | StaticType::JArray | StaticType::JToken
        ) {
            return error(
                ty.span,
                format!("As<{target}>() is not supported (string, byte[], JObject, JArray or JToken)"),
            );
        }
        self.preserve_content(args, "As", span)?;
        self.push_type(&target, ty.span)?;
        self.call(Builtin::BodyAs, 3, span)?;
        Ok(target)
    }

    /// Pushes the optional `preserveContent` argument (false when absent).
    fn preserve_content(&mut self, args: &[Arg], what: &str, span: Span) -> R<()> {
        self.expect_args(args, 0, 1, what, span)?;
        match args.first() {
            None => self.emit(Op::Bool(false)),
            Some(arg) => {
                if arg.name.as_deref().is_some_and(|n| n != "preserveContent") || arg.out.is_some() {
                    return error(arg.value.span, format!("the argument of {what} is `preserveContent: bool`"));
                }
                let ty = self.expr(&arg.value)?;
                self.expect_type(&ty, &StaticType::Bool, arg.value.span, "preserveContent")?;
            }
        }
        Ok(())
    }

    /// `token.Value<T>(key)`, `token.Value<T>()`, `token.ToObject<T>()`.
    fn json_value(&mut self, name: &str, type_args: &[TypeName], args: &[Arg], span: Span) -> R<StaticType> {
        let [ty] = type_args else {
            return error(span, format!("{name} needs one type argument, e.g. `{name}<string>(..)`"));
        };
        let target = self.resolve_type(ty)?;
        self.expect_plain(args, name)?;
        if name == "Value" && args.len() == 1 {
            self.argument(&args[0], Param::Any, name)?;
            self.push_type(&target, ty.span)?;
            self.call(Builtin::JValueOf, 3, span)?;
        } else {
            self.expect_args(args, 0, 0, name, span)?;
            self.push_type(&target, ty.span)?;
            self.call(Builtin::JToObject, 2, span)?;
        }
        Ok(target)
    }

    /// `s.Split(',')`, `s.Split(',', ';')`, `s.Split(new[] {","}, StringSplitOptions.RemoveEmptyEntries)`.
    fn split(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_plain(args, "Split")?;
        let options = args.last().and_then(|a| match constant_int(self, &a.value) {
            Some((value, StaticType::Enum(types::EnumType::StringSplitOptions))) => Some(value),
            _ => None,
        });
        let separators = if options.is_some() { &args[..args.len() - 1] } else { args };
        // `Split(separators, count[, options])`: an int after the separators.
        if let [first, count] = separators {
            let is_int = |lowerer: &Self, e: &super::super::syntax::Expr| {
                matches!(e.kind, ExprKind::Int(_))
                    || matches!(&e.kind, ExprKind::Name(name) if lowerer.lookup(name).is_some_and(|l| l.ty == StaticType::Int))
            };
            if is_int(self, &count.value) {
                self.params_array(std::slice::from_ref(first), "Split")?;
                self.argument(count, Param::Int, "Split")?;
                self.code.push_int(options.unwrap_or(0));
                self.call(Builtin::StrSplitCount, 4, span)?;
                return Ok(StaticType::array_of(StaticType::String));
            }
        }
        self.params_array(separators, "Split")?;
        match options {
            Some(value) => {
                self.code.push_int(value);
                self.call(Builtin::StrSplitOptions, 3, span)?;
            }
            None => self.call(Builtin::StrSplit, 2, span)?,
        }
        Ok(StaticType::array_of(StaticType::String))
    }

    /// Pushes a `params` array of chars or strings: a single array argument as is, otherwise
    /// the arguments packed with `MakeArray` (an empty array for none: split on white space).
    fn params_array(&mut self, args: &[Arg], what: &str) -> R<()> {
        if let [only] = args {
            let ty = self.expr(&only.value)?;
            if matches!(ty, StaticType::Array(_) | StaticType::List(_)) || ty.is_dynamic() {
                return Ok(());
            }
            self.separator_type(&ty, only.value.span, what)?;
            self.emit(Op::MakeArray(1));
            return Ok(());
        }
        for arg in args {
            let ty = self.expr(&arg.value)?;
            self.separator_type(&ty, arg.value.span, what)?;
        }
        let n = u16::try_from(args.len()).or_else(|_| error(Span::default(), "too many arguments"))?;
        self.emit(Op::MakeArray(n));
        Ok(())
    }

    fn separator_type(&self, ty: &StaticType, span: Span, what: &str) -> R<()> {
        if ty.is_dynamic() || matches!(ty, StaticType::String | StaticType::Char) {
            Ok(())
        } else {
            error(
                span,
                format!("{what} takes characters or strings here, not {ty} (the count overloads are not supported)"),
            )
        }
    }

    fn trim_chars(&mut self, name: &str, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_plain(args, name)?;
        self.params_array(args, name)?;
        let builtin = match name {
            "Trim" => Builtin::StrTrimChars,
            "TrimStart" => Builtin::StrTrimStart,
            _ => Builtin::StrTrimEnd,
        };
        self.call(builtin, 2, span)?;
        Ok(StaticType::String)
    }

    /// `token.ToString(Formatting.None)` (compact) or `(Formatting.Indented)`.
    fn json_to_string(&mut self, args: &[Arg], span: Span) -> R<StaticType> {
        match constant_int(self, &args[0].value) {
            Some((0, StaticType::Enum(types::EnumType::Formatting))) => {
                self.call(Builtin::JToStringCompact, 1, span)?
            }
            Some((1, StaticType::Enum(types::EnumType::Formatting))) => self.call(Builtin::ToString, 1, span)?,
            _ => {
                return error(
                    args[0].value.span,
                    "a JSON value's ToString takes Formatting.None or Formatting.Indented",
                );
            }
        }
        Ok(StaticType::String)
    }

    /// `SHA256.Create().ComputeHash(bytes)` (the hasher has no value: it is popped) and
    /// `new HMACSHA256(key).ComputeHash(bytes)` (the value is the key).
    fn compute_hash(&mut self, receiver: &StaticType, target_span: Span, args: &[Arg], span: Span) -> R<StaticType> {
        self.expect_args(args, 1, 1, "ComputeHash", span)?;
        self.expect_plain(args, "ComputeHash")?;
        match receiver {
            StaticType::Hasher(kind) => {
                self.emit(Op::Pop);
                self.argument(&args[0], Param::Any, "ComputeHash")?;
                self.call(kind.hash_builtin(), 1, span)?;
            }
            StaticType::Hmac(kind) => {
                let Some(builtin) = kind.hmac_builtin() else {
                    return error(
                        target_span,
                        "this HMAC algorithm is not supported (HMACSHA1, HMACSHA256, HMACSHA512)",
                    );
                };
                self.argument(&args[0], Param::Any, "ComputeHash")?;
                self.call(builtin, 2, span)?;
            }
            _ => {
                return error(
                    target_span,
                    format!(
                        "ComputeHash needs a hash algorithm (`SHA256.Create()`, `new HMACSHA256(key)`), not {receiver}"
                    ),
                );
            }
        }
        Ok(StaticType::Bytes)
    }

    /// `regex.IsMatch(input)` ...: the builtins take the input first, so the regex value goes
    /// through a temporary.
    fn regex_instance(&mut self, name: &str, args: &[Arg], span: Span) -> R<StaticType> {
        let (builtin, ty, argc) = match name {
            "IsMatch" => (Builtin::RegexIsMatch, StaticType::Bool, 1),
            "Match" => (Builtin::RegexMatch, StaticType::Match, 1),
            "Matches" => (Builtin::RegexMatches, StaticType::array_of(StaticType::Match), 1),
            "Split" => (Builtin::RegexSplit, StaticType::array_of(StaticType::String), 1),
            "Replace" => (Builtin::RegexReplace, StaticType::String, 2),
            _ => {
                return error(
                    span,
                    format!("Regex has no supported method `{name}` (IsMatch, Match, Matches, Replace, Split)"),
                );
            }
        };
        self.expect_args(args, argc, argc, &format!("Regex.{name}"), span)?;
        self.expect_plain(args, name)?;
        let regex = self.temp();
        self.emit(Op::StoreLocal(regex));
        self.argument(&args[0], Param::Str, name)?;
        self.emit(Op::LoadLocal(regex));
        if let Some(replacement) = args.get(1) {
            self.argument(replacement, Param::Str, name)?;
        }
        self.call(builtin, argc + 1, span)?;
        Ok(ty)
    }

    /// `date.ToUnixTimeSeconds()` = `(long)(date - epoch).TotalSeconds`, from existing ops.
    fn unix_time(&mut self, seconds: bool, span: Span) -> R<StaticType> {
        self.push_epoch(span)?;
        self.emit(Op::Sub);
        self.emit(Op::Prop(if seconds { Prop::TotalSeconds } else { Prop::TotalMilliseconds }));
        self.emit(Op::Cast(ValueType::Int));
        Ok(StaticType::Int)
    }

    /// Pushes 1970-01-01T00:00:00Z as a DateTime.
    pub(super) fn push_epoch(&mut self, span: Span) -> R<()> {
        self.code.push_str(UNIX_EPOCH);
        self.call(Builtin::DateTimeParse, 1, span)
    }

    // ---- argument helpers

    pub(super) fn expect_args(&self, args: &[Arg], min: usize, max: usize, what: &str, span: Span) -> R<()> {
        if (min..=max).contains(&args.len()) {
            return Ok(());
        }
        let expected = match (min, max) {
            (a, b) if a == b => format!("{a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        error(span, format!("`{what}` takes {expected} argument(s), not {}", args.len()))
    }

    /// Refuses named and `out` arguments.
    pub(super) fn expect_plain(&self, args: &[Arg], what: &str) -> R<()> {
        for arg in args {
            if arg.out.is_some() {
                return error(arg.value.span, format!("`{what}` takes no `out` arguments"));
            }
            if arg.name.is_some() {
                return error(arg.value.span, format!("named arguments are not supported for `{what}`"));
            }
        }
        Ok(())
    }

    /// Lowers every argument (plain ones only); returns their types.
    pub(super) fn positional_args(&mut self, args: &[Arg], what: &str) -> R<Vec<StaticType>> {
        self.expect_plain(args, what)?;
        args.iter().map(|a| self.expr(&a.value)).collect()
    }

    /// Lowers one argument and checks it against the parameter's type where both are known.
    pub(super) fn argument(&mut self, arg: &Arg, param: Param, what: &str) -> R<StaticType> {
        if arg.out.is_some() || arg.name.is_some() {
            return error(arg.value.span, format!("named and `out` arguments are not supported for `{what}`"));
        }
        let ty = self.expr(&arg.value)?;
        let ok = match param {
            Param::Any => true,
            _ if ty.is_dynamic() => true,
            Param::Str => matches!(ty, StaticType::String | StaticType::Char | StaticType::JToken),
            Param::Int => matches!(ty, StaticType::Int | StaticType::Enum(_) | StaticType::JToken),
            Param::Double => matches!(ty, StaticType::Int | StaticType::Double | StaticType::JToken),
            Param::Comparison => matches!(ty, StaticType::Enum(types::EnumType::StringComparison) | StaticType::Int),
        };
        if !ok {
            return error(
                arg.value.span,
                format!("`{what}` expects {} here, but `{}` is {ty}", param.static_type(), self.quote(arg.value.span)),
            );
        }
        Ok(ty)
    }

    pub(super) fn expect_type(&self, ty: &StaticType, want: &StaticType, span: Span, what: &str) -> R<()> {
        if ty.assignable_to(want) || (*want == StaticType::String && *ty == StaticType::Char) {
            Ok(())
        } else {
            error(span, format!("{what} must be {want}, not {ty}"))
        }
    }
}
