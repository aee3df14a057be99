//! Object and array creation: `new JObject(..) { .. }`, `new JProperty(n, v)`,
//! `new List<string> { .. }`, `new [] { .. }`, `new HMACSHA256(key)`, `new Regex(..)`.
//!
//! Initializers and constructor contents go through a temporary local holding the new object,
//! one `Add`/`JSet` call per element (each result popped), then the local is loaded.

use portcullis_contract::program::{Builtin, Op};

use super::super::lexer::Span;
use super::super::syntax::{Arg, Expr, InitElement, TypeName};
use super::super::types::{self, Param, StaticType};
use super::statics::hash_kind;
use super::{Lowerer, R, error};

impl Lowerer<'_> {
    pub(super) fn creation(
        &mut self,
        ty: &TypeName,
        args: &[Arg],
        init: Option<&[InitElement]>,
        span: Span,
    ) -> R<StaticType> {
        let name = types::normalize_type_name(&ty.name);
        let what = format!("new {name}");
        if init.is_none() {
            if let Some(created) = self.object_creation(ty, args, span)? {
                return Ok(created);
            }
        }
        if let Some(init) = init.filter(|init| init.iter().any(|e| matches!(e, InitElement::Property { .. }))) {
            return self.property_initializer(name, args, init, span);
        }
        if init.is_some() && !matches!(name, "JObject" | "JArray" | "List" | "Dictionary") {
            return error(span, format!("initializers (`{{ .. }}`) are not supported for `{name}`"));
        }
        let init = init.unwrap_or_default();
        match name {
            "JObject" => {
                self.expect_plain(args, &what)?;
                self.call(Builtin::JObjectNew, 0, span)?;
                self.fill(args, init, Builtin::JAdd, span)?;
                Ok(StaticType::JObject)
            }
            "JArray" => self.new_json_array(args, init, span),
            "JProperty" | "JValue" => self.new_json_value(name, args, span),
            "List" | "Dictionary" => self.new_collection(ty, args, init, span),
            "HMACSHA256" | "HMACSHA1" | "HMACSHA512" => {
                self.expect_args(args, 1, 1, &what, span)?;
                self.argument(&args[0], Param::Any, &what)?;
                Ok(StaticType::Hmac(hash_kind(name)))
            }
            "SHA256Managed" | "SHA1Managed" | "SHA512Managed" => {
                self.expect_args(args, 0, 0, &what, span)?;
                self.emit(Op::Null);
                Ok(StaticType::Hasher(hash_kind(name.trim_end_matches("Managed"))))
            }
            "Regex" => {
                self.expect_args(args, 1, 3, &what, span)?;
                self.expect_plain(args, &what)?;
                let options = args.get(1).map(|a| &a.value);
                if !self.regex_pattern(&args[0].value, options)? {
                    return error(
                        options.map_or(span, |o| o.span),
                        "`new Regex` needs constant RegexOptions (e.g. RegexOptions.IgnoreCase)",
                    );
                }
                Ok(StaticType::Regex)
            }
            "Guid" => {
                self.expect_args(args, 1, 1, &what, span)?;
                self.argument(&args[0], Param::Str, &what)?;
                self.call(Builtin::GuidParse, 1, span)?;
                Ok(StaticType::Guid)
            }
            _ => {
                // Resolve for a precise message (XML, unknown types), else name the type.
                types::resolve_type(ty).or_else(|message| error(ty.span, message))?;
                error(ty.span, format!("creating a `{}` with `new` is not supported in policy expressions", ty.name))
            }
        }
    }

    /// `new JArray()`, `new JArray { a, b }`, `new JArray(a, b)` and `new JArray(sequence)`.
    fn new_json_array(&mut self, args: &[Arg], init: &[InitElement], span: Span) -> R<StaticType> {
        self.expect_plain(args, "new JArray")?;
        let [only] = args else {
            self.call(Builtin::JArrayNew, 0, span)?;
            self.fill(args, init, Builtin::JAdd, span)?;
            return Ok(StaticType::JArray);
        };
        // One argument: a sequence gives one element per item, anything else one element. The
        // argument is evaluated first (C# order), so the new array goes under it via a local.
        let ty = self.expr(&only.value)?;
        if matches!(ty, StaticType::Array(_) | StaticType::List(_)) {
            self.call(Builtin::JArrayNew, 1, span)?;
        } else {
            let item = self.temp();
            self.emit(Op::StoreLocal(item));
            self.call(Builtin::JArrayNew, 0, span)?;
            let array = self.temp();
            self.emit(Op::StoreLocal(array));
            self.emit(Op::LoadLocal(array));
            self.emit(Op::LoadLocal(item));
            self.call(Builtin::JAdd, 2, span)?;
            self.emit(Op::Pop);
            self.emit(Op::LoadLocal(array));
        }
        self.fill(&[], init, Builtin::JAdd, span)?;
        Ok(StaticType::JArray)
    }

    /// `new JProperty(name, value)`, `new JValue(value)`.
    fn new_json_value(&mut self, name: &str, args: &[Arg], span: Span) -> R<StaticType> {
        let what = format!("new {name}");
        if name == "JProperty" {
            self.expect_args(args, 2, 2, &what, span)?;
            self.argument(&args[0], Param::Str, &what)?;
            self.argument(&args[1], Param::Any, &what)?;
            self.call(Builtin::JPropertyNew, 2, span)?;
            Ok(StaticType::JProperty)
        } else {
            self.expect_args(args, 1, 1, &what, span)?;
            self.argument(&args[0], Param::Any, &what)?;
            self.call(Builtin::JValueNew, 1, span)?;
            Ok(StaticType::JToken)
        }
    }

    /// `new T { Name = value }`: the settable properties the types we model have, each the same
    /// as a constructor argument — `new HMACSHA256 { Key = key }` is `new HMACSHA256(key)`.
    fn property_initializer(&mut self, name: &str, args: &[Arg], init: &[InitElement], span: Span) -> R<StaticType> {
        let hmac = matches!(name, "HMACSHA256" | "HMACSHA1" | "HMACSHA512");
        match init {
            [InitElement::Property { name: property, value, .. }] if hmac && property == "Key" && args.is_empty() => {
                let what = format!("new {name} {{ Key = .. }}");
                self.argument(&Arg { name: None, out: None, value: value.clone() }, Param::Any, &what)?;
                Ok(StaticType::Hmac(hash_kind(name)))
            }
            _ => {
                let (property, at) = init
                    .iter()
                    .find_map(|e| match e {
                        InitElement::Property { name, name_span, .. } => Some((name.as_str(), *name_span)),
                        _ => None,
                    })
                    .unwrap_or(("?", span));
                error(
                    at,
                    format!(
                        "`new {name} {{ {property} = .. }}`: object initializers set only `Key` of a new HMAC (`new HMACSHA256 {{ Key = key }}`) in policy expressions"
                    ),
                )
            }
        }
    }

    /// `new List<T>()`, `new List<T>(sequence)`, `new List<T> { .. }`, `new Dictionary<string, T>()`.
    fn new_collection(&mut self, ty: &TypeName, args: &[Arg], init: &[InitElement], span: Span) -> R<StaticType> {
        let collection = self.resolve_type(ty)?;
        self.expect_plain(args, "new")?;
        if let StaticType::Dictionary(_) = collection {
            if !args.is_empty() {
                return error(span, "`new Dictionary<string, T>(..)` takes no arguments (use an initializer)");
            }
            self.call(Builtin::DictionaryNew, 0, span)?;
            if !init.is_empty() {
                let dict = self.temp();
                self.emit(Op::StoreLocal(dict));
                for element in init {
                    let (key, value) = match element {
                        InitElement::Add(items) if items.len() == 2 => (&items[0], &items[1]),
                        InitElement::Set { key, value } => (key, value),
                        InitElement::Add(_) | InitElement::Property { .. } => {
                            return error(
                                span,
                                "a dictionary initializer element is `{ key, value }` or `[key] = value`",
                            );
                        }
                    };
                    self.emit(Op::LoadLocal(dict));
                    let key_ty = self.expr(key)?;
                    self.expect_type(&key_ty, &StaticType::String, key.span, "a dictionary key")?;
                    self.expr(value)?;
                    self.call(Builtin::ElementSet, 3, span)?;
                    self.emit(Op::Pop);
                }
                self.emit(Op::LoadLocal(dict));
            }
            return Ok(collection);
        }
        match args {
            [] => self.call(Builtin::ListNew, 0, span)?,
            [source] => {
                let source_ty = self.expr(&source.value)?;
                if !source_ty.is_dynamic() && source_ty.element().is_none() {
                    return error(
                        source.value.span,
                        format!(
                            "`new List<..>(x)` copies a sequence; {source_ty} is not one (capacities are not supported)"
                        ),
                    );
                }
                self.call(Builtin::SeqToList, 1, span)?;
            }
            _ => return error(span, "`new List<T>` takes 0 or 1 argument(s)"),
        }
        self.fill(&[], init, Builtin::ListAdd, span)?;
        Ok(collection)
    }

    /// With the new container on the stack: adds constructor arguments and initializer
    /// elements one by one through a temporary, then reloads the container.
    fn fill(&mut self, args: &[Arg], init: &[InitElement], add: Builtin, span: Span) -> R<()> {
        if args.is_empty() && init.is_empty() {
            return Ok(());
        }
        let container = self.temp();
        self.emit(Op::StoreLocal(container));
        for arg in args {
            self.emit(Op::LoadLocal(container));
            self.expr(&arg.value)?;
            self.call(add, 2, span)?;
            self.emit(Op::Pop);
        }
        for element in init {
            self.emit(Op::LoadLocal(container));
            match element {
                InitElement::Add(items) => {
                    if items.is_empty() || items.len() > 2 || (add == Builtin::ListAdd && items.len() != 1) {
                        return error(
                            span,
                            "each initializer element takes one value (or a `{ name, value }` pair for JObject)",
                        );
                    }
                    for item in items {
                        self.expr(item)?;
                    }
                    self.call(add, items.len() + 1, span)?;
                }
                InitElement::Set { key, value } => {
                    if add != Builtin::JAdd {
                        return error(key.span, "index initializers (`[k] = v`) are only supported for JObject");
                    }
                    self.expr(key)?;
                    self.expr(value)?;
                    self.call(Builtin::JSet, 3, span)?;
                }
                InitElement::Property { name_span, .. } => {
                    return error(*name_span, "object initializers that set properties are not supported here");
                }
            }
            self.emit(Op::Pop);
        }
        self.emit(Op::LoadLocal(container));
        Ok(())
    }

    /// `new [] { a, b }` / `new T[] { a, b }`.
    pub(super) fn new_array(&mut self, element: Option<&TypeName>, items: &[Expr], span: Span) -> R<StaticType> {
        let declared = match element {
            Some(ty) => Some(self.resolve_type(ty)?),
            None => None,
        };
        if element.is_some_and(|ty| types::normalize_type_name(&ty.name) == "byte" && ty.array_rank == 0) {
            if let Some(bytes) = self.constant_bytes(items, span)? {
                return Ok(bytes);
            }
            // Computed bytes (`Convert.ToByte(..)`): an array of ints made a `byte[]` value.
            for item in items {
                let ty = self.expr(item)?;
                if !ty.is_dynamic() && ty != StaticType::Int {
                    return error(item.span, format!("cannot put {ty} into an array of byte"));
                }
            }
            let n = u16::try_from(items.len()).or_else(|_| error(span, "too many array elements"))?;
            self.emit(Op::MakeArray(n));
            self.call(Builtin::BytesFromArray, 1, span)?;
            return Ok(StaticType::Bytes);
        }
        let mut unified: Option<StaticType> = None;
        for item in items {
            let ty = self.expr(item)?;
            if let Some(declared) = &declared {
                let fits = ty.assignable_to(declared) || (*declared == StaticType::String && ty == StaticType::Char);
                if !fits {
                    return error(item.span, format!("cannot put {ty} into an array of {declared}"));
                }
            }
            unified = Some(match unified {
                None => ty,
                Some(previous) => types::unify(&previous, &ty),
            });
        }
        let n = u16::try_from(items.len()).or_else(|_| error(span, "too many array elements"))?;
        self.emit(Op::MakeArray(n));
        let element = declared.or(unified).unwrap_or(StaticType::Object);
        Ok(StaticType::array_of(if element == StaticType::Null { StaticType::Object } else { element }))
    }
}
