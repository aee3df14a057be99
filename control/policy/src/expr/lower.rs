//! Code generation: the syntax tree → ops, type-checked against [`super::types`].
//!
//! Every expression leaves exactly one value on the stack. Member chains (`a?.b.c(d)[e]`) are
//! lowered as one unit so that a `?.` can jump, keeping its `null`, to the end of the whole
//! chain (C#'s null propagation). Method calls live in [`methods`] (instance) and [`statics`]
//! (static classes), object creation in [`creation`], LINQ lambdas in [`linq`] and the
//! statements of `@{}` blocks in [`statements`].

mod creation;
mod linq;
mod methods;
mod objects;
mod statements;
mod statics;

use portcullis_contract::program::{Builtin, Const, Op};

use super::ExprError;
use super::lexer::Span;
use super::syntax::{AssignOp, BinaryOp, Expr, ExprKind, InterpolatedPart, Source, TypeName, UnaryOp};
use super::types::{self, Access, StaticType};
use crate::code::{CodeBuilder, Label};

type R<T> = Result<T, ExprError>;

/// Lowers a parsed expression or block; returns its type and the span to blame for it.
pub(crate) fn lower(code: &mut CodeBuilder, text: &str, source: &Source) -> R<(StaticType, Span)> {
    let mut lowerer = Lowerer {
        code,
        text,
        scopes: vec![Vec::new()],
        chain: None,
        loops: Vec::new(),
        block: None,
        tries: Vec::new(),
        functions: Vec::new(),
        inlining: Vec::new(),
        open_handlers: 0,
    };
    match source {
        Source::Expression(expr) => Ok((lowerer.expr(expr)?, expr.span)),
        Source::Block(statements, close) => {
            let ty = lowerer.block(statements, *close)?;
            let span = Span::new(statements.first().map_or(close.start, |s| s.span.start), close.end);
            Ok((ty, span))
        }
    }
}

/// A local variable in scope.
#[derive(Debug, Clone)]
struct Local {
    name: String,
    slot: u16,
    ty: StaticType,
}

/// Where `break` and `continue` go in the innermost loop (or `switch`: no `continue` of its
/// own), and how many `try`s were open when it began (to leave the ones inside it).
#[derive(Debug, Clone, Copy)]
struct LoopLabels {
    exit: Label,
    next: Option<Label>,
    tries: usize,
}

/// A `try` statement being lowered: how many of its handlers are entered at this point (the
/// `catch` one and the `finally` one) and its `finally` block, which a `return`, `break` or
/// `continue` leaving it runs on the way out.
#[derive(Debug, Clone)]
struct TryFrame {
    handlers: usize,
    finally: Option<Vec<super::syntax::Stmt>>,
    /// The local holding the caught exception inside its `catch` (for `throw;`).
    exception: Option<u16>,
}

/// The `@{}` block being lowered: `return` stores into `result` and jumps to `end`.
#[derive(Debug)]
struct BlockState {
    result: u16,
    end: Label,
    returns: Vec<StaticType>,
    /// A `void` local function: `return;` without a value.
    void: bool,
}

struct Lowerer<'c> {
    code: &'c mut CodeBuilder,
    /// The whole source, to quote it in messages.
    text: &'c str,
    scopes: Vec<Vec<Local>>,
    /// The end of the member chain being lowered, where `?.` jumps with its `null`.
    chain: Option<Label>,
    loops: Vec<LoopLabels>,
    block: Option<BlockState>,
    tries: Vec<TryFrame>,
    /// Local functions in scope (innermost last), inlined where they are called.
    functions: Vec<std::rc::Rc<super::syntax::LocalFunction>>,
    /// The local functions being inlined (to refuse recursion).
    inlining: Vec<String>,
    /// `try` handlers that may be entered at this point, inlined local functions included
    /// (bounded by the VM's handler stack).
    open_handlers: usize,
}

fn error<T>(span: Span, message: impl Into<String>) -> R<T> {
    Err(ExprError::new(span, message))
}

impl Lowerer<'_> {
    // ---- emission helpers

    fn emit(&mut self, op: Op) {
        self.code.emit(op);
    }

    fn jump(&mut self, op: Op, label: Label) {
        self.code.emit_jump(op, label);
    }

    /// `Call(builtin, argc)`, refusing argument counts past the op's `u8`.
    fn call(&mut self, builtin: Builtin, argc: usize, span: Span) -> R<()> {
        let argc = u8::try_from(argc).or_else(|_| error(span, "too many arguments"))?;
        self.emit(Op::Call(builtin, argc));
        Ok(())
    }

    fn push_const(&mut self, value: Const) {
        let index = self.code.constant(value);
        self.emit(Op::Const(index));
    }

    /// Pushes the int that stands for `ty` in type-const arguments.
    fn push_type(&mut self, ty: &StaticType, span: Span) -> R<()> {
        let Some(vt) = types::value_type(ty) else {
            return error(span, format!("`{ty}` cannot be used as a type argument here"));
        };
        self.code.push_int(types::value_type_index(vt));
        Ok(())
    }

    fn quote(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    fn temp(&mut self) -> u16 {
        self.code.local()
    }

    // ---- scopes

    fn lookup(&self, name: &str) -> Option<&Local> {
        self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|l| l.name == name)
    }

    fn declare(&mut self, name: &str, span: Span, ty: StaticType) -> R<u16> {
        let slot = self.code.local();
        self.bind(name, span, slot, ty)?;
        Ok(slot)
    }

    /// Names an existing slot in the innermost scope (C# forbids shadowing any local in scope).
    fn bind(&mut self, name: &str, span: Span, slot: u16, ty: StaticType) -> R<()> {
        if self.lookup(name).is_some() {
            return error(span, format!("a local variable named `{name}` is already defined in this scope"));
        }
        if name == "context" {
            return error(span, "`context` cannot be redeclared");
        }
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(Local { name: name.to_owned(), slot, ty });
        }
        Ok(())
    }

    fn push_scope(&mut self) {
        self.scopes.push(Vec::new());
    }

    fn pop_scope(&mut self) {
        self.scopes.pop();
    }

    fn resolve_type(&self, ty: &TypeName) -> R<StaticType> {
        types::resolve_type(ty).or_else(|message| error(ty.span, message))
    }

    // ---- expressions

    fn expr(&mut self, e: &Expr) -> R<StaticType> {
        match &e.kind {
            ExprKind::Member { .. } | ExprKind::Call { .. } | ExprKind::Index { .. } => {
                let end = self.code.label();
                let outer = self.chain.replace(end);
                let ty = self.link(e);
                self.chain = outer;
                self.code.place(end);
                ty
            }
            _ => self.non_chain(e),
        }
    }

    /// A link of the current member chain.
    fn link(&mut self, e: &Expr) -> R<StaticType> {
        match &e.kind {
            ExprKind::Member { target, name, name_span, null_conditional, .. } => {
                if let Some(path) = statics::static_path(self, e) {
                    return self.static_member(&path, e.span);
                }
                let receiver = self.receiver(target, *null_conditional)?;
                self.member(&receiver, name, *name_span, e.span)
            }
            ExprKind::Call { callee, args } => self.call_expr(callee, args, e.span),
            ExprKind::Index { target, index, null_conditional } => {
                let receiver = self.receiver(target, *null_conditional)?;
                self.index(&receiver, target.span, index)
            }
            _ => self.expr(e),
        }
    }

    /// Lowers the receiver of a member access or call in the current chain; after `?.`, a
    /// null receiver jumps to the end of the chain.
    fn receiver(&mut self, target: &Expr, null_conditional: bool) -> R<StaticType> {
        let ty = self.link(target)?;
        if null_conditional {
            if let Some(end) = self.chain {
                self.jump(Op::JumpIfNull(0), end);
            }
        }
        Ok(ty)
    }

    fn member(&mut self, receiver: &StaticType, name: &str, name_span: Span, span: Span) -> R<StaticType> {
        if let Some(ty) = self.object_member(receiver, name, name_span, span)? {
            return Ok(ty);
        }
        if matches!(receiver, StaticType::Hasher(_) | StaticType::Hmac(_) | StaticType::Regex) {
            return error(name_span, format!("`{}`: {receiver} has no readable members here", self.quote(span)));
        }
        match types::member(receiver, name) {
            Ok((Access::Prop(prop), ty)) => {
                self.emit(Op::Prop(prop));
                Ok(ty)
            }
            Ok((Access::Call(builtin), ty)) => {
                self.call(builtin, 1, span)?;
                Ok(ty)
            }
            Err(message) => error(name_span, format!("`{}`: {message}", self.quote(span))),
        }
    }

    fn index(&mut self, receiver: &StaticType, target_span: Span, index: &Expr) -> R<StaticType> {
        let Some((element, key)) = receiver.indexer() else {
            return error(
                target_span,
                format!("`{}` is a {receiver}, which cannot be indexed", self.quote(target_span)),
            );
        };
        let key_ty = self.expr(index)?;
        let key_ok = key_ty.assignable_to(&key) || (key == StaticType::String && key_ty == StaticType::Char);
        if !key_ok {
            return error(index.span, format!("a {receiver} is indexed by {key}, not {key_ty}"));
        }
        self.emit(Op::Index);
        Ok(element)
    }

    fn non_chain(&mut self, e: &Expr) -> R<StaticType> {
        match &e.kind {
            ExprKind::Null => {
                self.emit(Op::Null);
                Ok(StaticType::Null)
            }
            ExprKind::Bool(b) => {
                self.emit(Op::Bool(*b));
                Ok(StaticType::Bool)
            }
            ExprKind::Int(i) => {
                self.code.push_int(*i);
                Ok(StaticType::Int)
            }
            ExprKind::Double(d) => {
                self.push_const(Const::Double(*d));
                Ok(StaticType::Double)
            }
            ExprKind::Char(c) => {
                self.code.push_str(&c.to_string());
                Ok(StaticType::Char)
            }
            ExprKind::Str(s) => {
                self.code.push_str(s);
                Ok(StaticType::String)
            }
            ExprKind::Interpolated(parts) => self.interpolated(parts, e.span),
            ExprKind::Name(name) => self.name(name, e.span),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, e.span),
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Conditional { condition, then, otherwise } => {
                self.condition(condition)?;
                let otherwise_label = self.code.label();
                let end = self.code.label();
                self.jump(Op::JumpIfFalse(0), otherwise_label);
                let a = self.expr(then)?;
                self.jump(Op::Jump(0), end);
                self.code.place(otherwise_label);
                let b = self.expr(otherwise)?;
                self.code.place(end);
                Ok(types::unify(&a, &b))
            }
            ExprKind::Cast { ty, operand } => self.cast(ty, operand, e.span),
            ExprKind::As { operand, ty } => {
                let target = self.resolve_type(ty)?;
                self.expr(operand)?;
                let vt = types::value_type(&target)
                    .ok_or_else(|| ExprError::new(ty.span, format!("`as {target}` is not supported")))?;
                self.emit(Op::As(vt));
                Ok(target)
            }
            ExprKind::Is { operand, ty, binding } => self.is_test(operand, ty.as_ref(), binding.as_ref()),
            ExprKind::Lambda { .. } => error(
                e.span,
                "lambdas are only supported as the argument of LINQ methods (Any, All, Where, Select, FirstOrDefault, Count, ...) and Array.Exists",
            ),
            ExprKind::New { ty, args, init } => self.creation(ty, args, init.as_deref(), e.span),
            ExprKind::NewSizedArray { element, size } => self.new_sized_array(element, size, e.span),
            ExprKind::NewAnonymous(members) => self.new_anonymous(members, e.span),
            ExprKind::Throw(operand) => {
                self.throw_value(operand)?;
                Ok(StaticType::Null)
            }
            ExprKind::NewArray { element, items } => self.new_array(element.as_ref(), items, e.span),
            ExprKind::Assign { op, target, value } => self.assign(*op, target, value, true, e.span),
            ExprKind::Step { increment, prefix, target } => self.step(*increment, *prefix, target, true, e.span),
            ExprKind::Member { .. } | ExprKind::Call { .. } | ExprKind::Index { .. } => self.expr(e),
        }
    }

    fn name(&mut self, name: &str, span: Span) -> R<StaticType> {
        if let Some(local) = self.lookup(name) {
            let (slot, ty) = (local.slot, local.ty.clone());
            self.emit(Op::LoadLocal(slot));
            return Ok(ty);
        }
        if name == "context" {
            self.emit(Op::Context);
            return Ok(StaticType::Context(types::ContextObject::Context));
        }
        if statics::is_static_class(name) {
            return error(span, format!("`{name}` is a type, not a value"));
        }
        let mut message = format!("`{name}` does not exist in the current context");
        let candidates: Vec<String> =
            self.scopes.iter().flat_map(|s| s.iter().map(|l| l.name.clone())).chain(["context".to_owned()]).collect();
        if let Some(suggestion) = types::suggest(name, candidates.iter().map(String::as_str)) {
            message.push_str(&format!(" (did you mean `{suggestion}`?)"));
        }
        error(span, message)
    }

    /// Lowers a condition (must be a bool where the type is known).
    fn condition(&mut self, e: &Expr) -> R<()> {
        let ty = self.expr(e)?;
        if !ty.is_dynamic() && ty != StaticType::Bool {
            return error(e.span, format!("a condition must be a bool, but `{}` is {ty}", self.quote(e.span)));
        }
        Ok(())
    }

    fn interpolated(&mut self, parts: &[InterpolatedPart], span: Span) -> R<StaticType> {
        for part in parts {
            match part {
                InterpolatedPart::Text(text) => self.code.push_str(text),
                InterpolatedPart::Hole { expr, format } => {
                    self.expr(expr)?;
                    if let Some(format) = format {
                        self.code.push_str(format);
                        self.call(Builtin::ToStringFormat, 2, span)?;
                    }
                }
            }
        }
        match parts {
            [] => self.code.push_str(""),
            [InterpolatedPart::Text(_)] => {}
            _ => {
                let n =
                    u16::try_from(parts.len()).or_else(|_| error(span, "too many parts in an interpolated string"))?;
                self.emit(Op::Concat(n));
            }
        }
        Ok(StaticType::String)
    }

    fn unary(&mut self, op: UnaryOp, operand: &Expr, span: Span) -> R<StaticType> {
        match op {
            UnaryOp::Neg => {
                if let ExprKind::Int(i) = operand.kind {
                    self.code.push_int(i.wrapping_neg());
                    return Ok(StaticType::Int);
                }
                if let ExprKind::Double(d) = operand.kind {
                    self.push_const(Const::Double(-d));
                    return Ok(StaticType::Double);
                }
                let ty = self.expr(operand)?;
                self.numeric_operand(&ty, "-", operand.span)?;
                self.emit(Op::Neg);
                Ok(if ty.is_dynamic() { StaticType::Object } else { ty })
            }
            UnaryOp::Plus => {
                let ty = self.expr(operand)?;
                self.numeric_operand(&ty, "+", operand.span)?;
                Ok(ty)
            }
            UnaryOp::Not => {
                let ty = self.expr(operand)?;
                if !ty.is_dynamic() && ty != StaticType::Bool {
                    return error(
                        operand.span,
                        format!("operator `!` needs a bool, but `{}` is {ty}", self.quote(operand.span)),
                    );
                }
                self.emit(Op::Not);
                Ok(StaticType::Bool)
            }
            UnaryOp::BitNot => {
                let ty = self.expr(operand)?;
                if !ty.is_dynamic() && !is_integral(&ty) {
                    return error(
                        operand.span,
                        format!("operator `~` needs an integer, but `{}` is {ty}", self.quote(operand.span)),
                    );
                }
                self.call(Builtin::BitNot, 1, span)?;
                Ok(StaticType::Int)
            }
        }
    }

    fn numeric_operand(&self, ty: &StaticType, op: &str, span: Span) -> R<()> {
        if ty.is_dynamic() || matches!(ty, StaticType::Int | StaticType::Double | StaticType::TimeSpan) {
            Ok(())
        } else {
            error(span, format!("operator `{op}` cannot be applied to {ty}"))
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, span: Span) -> R<StaticType> {
        match op {
            BinaryOp::And | BinaryOp::Or => return self.logical(op, lhs, rhs),
            BinaryOp::Coalesce => {
                let a = self.expr(lhs)?;
                let end = self.code.label();
                self.jump(Op::JumpIfNotNull(0), end);
                self.emit(Op::Pop);
                let b = self.expr(rhs)?;
                self.code.place(end);
                return Ok(types::unify(&a, &b));
            }
            BinaryOp::BitOr | BinaryOp::BitAnd | BinaryOp::BitXor => {
                // Enum flags (`RegexOptions.IgnoreCase | RegexOptions.Multiline`) fold.
                if let Some(value) = statics::constant_int(self, &binary_expr(op, lhs, rhs, span)) {
                    self.code.push_int(value.0);
                    return Ok(value.1);
                }
                return self.bitwise(op, lhs, rhs, span);
            }
            BinaryOp::Shl | BinaryOp::Shr => return self.bitwise(op, lhs, rhs, span),
            _ => {}
        }
        let a = self.expr(lhs)?;
        let b = self.expr(rhs)?;
        let result = binary_type(op, &a, &b).ok_or_else(|| {
            ExprError::new(span, format!("operator `{}` cannot be applied to {a} and {b}", op.symbol()))
        })?;
        self.emit(match op {
            BinaryOp::Add => Op::Add,
            BinaryOp::Sub => Op::Sub,
            BinaryOp::Mul => Op::Mul,
            BinaryOp::Div => Op::Div,
            BinaryOp::Rem => Op::Rem,
            BinaryOp::Eq => Op::Eq,
            BinaryOp::Ne => Op::Ne,
            BinaryOp::Lt => Op::Lt,
            BinaryOp::Le => Op::Le,
            BinaryOp::Gt => Op::Gt,
            _ => Op::Ge,
        });
        Ok(result)
    }

    /// `&`, `|`, `^` on integers (bitwise) or bools (logical, both sides evaluated), and the
    /// shifts `<<`, `>>` on integers.
    fn bitwise(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, span: Span) -> R<StaticType> {
        let a = self.expr(lhs)?;
        let b = self.expr(rhs)?;
        let shift = matches!(op, BinaryOp::Shl | BinaryOp::Shr);
        let boolean = |t: &StaticType| *t == StaticType::Bool || t.is_dynamic();
        let integral = |t: &StaticType| is_integral(t) || t.is_dynamic();
        let result = if !shift && boolean(&a) && boolean(&b) && (a == StaticType::Bool || b == StaticType::Bool) {
            StaticType::Bool
        } else if integral(&a) && integral(&b) {
            if a.is_dynamic() && b.is_dynamic() && !shift { StaticType::Object } else { StaticType::Int }
        } else {
            return error(span, format!("operator `{}` cannot be applied to {a} and {b}", op.symbol()));
        };
        let builtin = match op {
            BinaryOp::BitAnd => Builtin::BitAnd,
            BinaryOp::BitOr => Builtin::BitOr,
            BinaryOp::BitXor => Builtin::BitXor,
            BinaryOp::Shl => Builtin::ShiftLeft,
            _ => Builtin::ShiftRight,
        };
        self.call(builtin, 2, span)?;
        Ok(result)
    }

    /// `a && b`: a; Dup; JumpIfFalse(end); Pop; b; end (and `||` with JumpIfTrue).
    fn logical(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> R<StaticType> {
        self.condition(lhs)?;
        let end = self.code.label();
        self.emit(Op::Dup);
        self.jump(if op == BinaryOp::And { Op::JumpIfFalse(0) } else { Op::JumpIfTrue(0) }, end);
        self.emit(Op::Pop);
        self.condition(rhs)?;
        self.code.place(end);
        Ok(StaticType::Bool)
    }

    fn cast(&mut self, ty: &TypeName, operand: &Expr, span: Span) -> R<StaticType> {
        let target = self.resolve_type(ty)?;
        let source = self.expr(operand)?;
        if let Some(kind) = narrow_kind(ty) {
            // `(short)x`, `(byte)x`: an integer keeps its low bits, as an unchecked C# cast does.
            if !source.is_dynamic()
                && !matches!(source, StaticType::Int | StaticType::Double | StaticType::Enum(_) | StaticType::JToken)
            {
                return error(span, format!("cannot convert {source} to {}", ty.name));
            }
            if source != StaticType::Int {
                self.emit(Op::Cast(portcullis_contract::program::ValueType::Int));
            }
            self.code.push_int(kind);
            self.call(Builtin::IntNarrow, 2, span)?;
            return Ok(StaticType::Int);
        }
        if !source.castable_to(&target) {
            return error(span, format!("cannot convert {source} to {target}"));
        }
        if source == target {
            return Ok(target);
        }
        let Some(vt) = types::value_type(&target) else {
            return error(ty.span, format!("casts to {target} are not supported"));
        };
        self.emit(Op::Cast(vt));
        Ok(target)
    }

    fn is_test(&mut self, operand: &Expr, ty: Option<&TypeName>, binding: Option<&(String, Span)>) -> R<StaticType> {
        self.expr(operand)?;
        let Some(ty) = ty else {
            self.emit(Op::Null);
            self.emit(Op::Eq);
            return Ok(StaticType::Bool);
        };
        let target = self.resolve_type(ty)?;
        if let Some((name, span)) = binding {
            let slot = self.declare(name, *span, target.clone())?;
            self.emit(Op::StoreLocal(slot));
            self.emit(Op::LoadLocal(slot));
        }
        self.push_type(&target, ty.span)?;
        self.call(Builtin::IsType, 2, ty.span)?;
        Ok(StaticType::Bool)
    }

    /// `target op= value`; leaves the assigned value when `want_value`.
    fn assign(&mut self, op: AssignOp, target: &Expr, value: &Expr, want_value: bool, span: Span) -> R<StaticType> {
        match &target.kind {
            ExprKind::Name(name) => self.assign_local(op, name, target.span, value, want_value, span),
            ExprKind::Index { target: container, index, null_conditional: false } if op == AssignOp::Set => {
                if want_value {
                    return error(span, "an indexer assignment can only be used as a statement");
                }
                self.assign_element(container, index, value, target.span, span)?;
                Ok(StaticType::Object)
            }
            ExprKind::Member { .. } => error(target.span, "properties cannot be assigned in policy expressions"),
            _ => error(target.span, "only local variables and JSON elements (`obj[\"name\"] = value`) can be assigned"),
        }
    }

    /// `x = v`, `x += v`, `x ??= v` ... on a local.
    fn assign_local(
        &mut self,
        op: AssignOp,
        name: &str,
        name_span: Span,
        value: &Expr,
        want_value: bool,
        span: Span,
    ) -> R<StaticType> {
        let Some(local) = self.lookup(name).cloned() else {
            if name == "context" {
                return error(name_span, "`context` is read-only");
            }
            return self.name(name, name_span);
        };
        let ty = match op {
            AssignOp::Set => self.expr(value)?,
            AssignOp::Coalesce => {
                self.emit(Op::LoadLocal(local.slot));
                let end = self.code.label();
                self.jump(Op::JumpIfNotNull(0), end);
                self.emit(Op::Pop);
                let ty = self.expr(value)?;
                self.code.place(end);
                ty
            }
            AssignOp::BitAnd | AssignOp::BitOr | AssignOp::BitXor => {
                // `x &= y` is `x = x & y`, typed as the operator types it.
                let lhs = Expr { kind: ExprKind::Name(name.to_owned()), span: name_span };
                self.bitwise(compound_operator(op), &lhs, value, span)?
            }
            _ => {
                self.emit(Op::LoadLocal(local.slot));
                let b = self.expr(value)?;
                let binary = compound_operator(op);
                let ty = binary_type(binary, &local.ty, &b).ok_or_else(|| {
                    ExprError::new(
                        span,
                        format!("operator `{}` cannot be applied to {} and {b}", binary.symbol(), local.ty),
                    )
                })?;
                self.emit(match op {
                    AssignOp::Add => Op::Add,
                    AssignOp::Sub => Op::Sub,
                    AssignOp::Mul => Op::Mul,
                    AssignOp::Div => Op::Div,
                    _ => Op::Rem,
                });
                ty
            }
        };
        if !ty.assignable_to(&local.ty) {
            return error(value.span, format!("cannot assign {ty} to `{name}`, which is {}", local.ty));
        }
        if want_value {
            self.emit(Op::Dup);
        }
        self.emit(Op::StoreLocal(local.slot));
        Ok(local.ty)
    }

    /// `json[key] = value` (a statement): `JSet(json, key, value)`.
    fn assign_element(&mut self, container: &Expr, index: &Expr, value: &Expr, target_span: Span, span: Span) -> R<()> {
        let ty = self.expr(container)?;
        match ty {
            StaticType::JObject | StaticType::JArray | StaticType::JToken | StaticType::Object => {}
            StaticType::Dictionary(_) if self.quote(container.span).ends_with("Variables") => {
                return error(
                    target_span,
                    "context.Variables is read-only in expressions; use the set-variable policy",
                );
            }
            StaticType::Array(_) | StaticType::List(_) | StaticType::Dictionary(_) | StaticType::Bytes => {
                let (element, key) = ty.indexer().unwrap_or((StaticType::Object, StaticType::Object));
                let key_ty = self.expr(index)?;
                if !key_ty.assignable_to(&key) {
                    return error(index.span, format!("a {ty} is indexed by {key}, not {key_ty}"));
                }
                let value_ty = self.expr(value)?;
                let char_to_string = element == StaticType::String && value_ty == StaticType::Char;
                if !(value_ty.assignable_to(&element) || char_to_string) {
                    return error(value.span, format!("cannot assign {value_ty} to an element of {ty}"));
                }
                self.call(Builtin::ElementSet, 3, span)?;
                self.emit(Op::Pop);
                return Ok(());
            }
            _ => {
                return error(
                    target_span,
                    format!("assigning to an element of a {ty} is not supported (only JSON objects and arrays)"),
                );
            }
        }
        self.expr(index)?;
        self.expr(value)?;
        self.call(Builtin::JSet, 3, span)?;
        self.emit(Op::Pop);
        Ok(())
    }

    /// `++x`, `x--`...: leaves the new (prefix) or old (postfix) value when `want_value`.
    fn step(&mut self, increment: bool, prefix: bool, target: &Expr, want_value: bool, span: Span) -> R<StaticType> {
        let ExprKind::Name(name) = &target.kind else {
            return error(span, "`++` and `--` only apply to local variables");
        };
        let Some(local) = self.lookup(name).cloned() else { return self.name(name, target.span) };
        self.numeric_operand(&local.ty, if increment { "++" } else { "--" }, target.span)?;
        self.emit(Op::LoadLocal(local.slot));
        if want_value && !prefix {
            self.emit(Op::Dup);
        }
        self.emit(Op::Int(1));
        self.emit(if increment { Op::Add } else { Op::Sub });
        if want_value && prefix {
            self.emit(Op::Dup);
        }
        self.emit(Op::StoreLocal(local.slot));
        Ok(local.ty)
    }
}

fn binary_expr(op: BinaryOp, lhs: &Expr, rhs: &Expr, span: Span) -> Expr {
    Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs.clone()), rhs: Box::new(rhs.clone()) }, span }
}

fn compound_operator(op: AssignOp) -> BinaryOp {
    match op {
        AssignOp::Add => BinaryOp::Add,
        AssignOp::Sub => BinaryOp::Sub,
        AssignOp::Mul => BinaryOp::Mul,
        AssignOp::Div => BinaryOp::Div,
        AssignOp::BitAnd => BinaryOp::BitAnd,
        AssignOp::BitOr => BinaryOp::BitOr,
        AssignOp::BitXor => BinaryOp::BitXor,
        _ => BinaryOp::Rem,
    }
}

/// The result type of an arithmetic or comparison operator, or `None` when C# refuses it.
/// Integers of every width (the VM holds them all as 64-bit) and enums. Not chars: the VM holds
/// a char as a one-character string, so bit operations on one are refused here.
fn is_integral(ty: &StaticType) -> bool {
    matches!(ty, StaticType::Int | StaticType::Enum(_))
}

/// The [`NARROW_KINDS`] index a cast to `ty` narrows to, if it names a narrow integer type.
///
/// [`NARROW_KINDS`]: portcullis_contract::program::NARROW_KINDS
pub(super) fn narrow_kind(ty: &TypeName) -> Option<i64> {
    if ty.array_rank > 0 || !ty.args.is_empty() {
        return None;
    }
    let kind = match ty.name.rsplit('.').next().unwrap_or(&ty.name) {
        "sbyte" | "SByte" => 0,
        "byte" | "Byte" => 1,
        "short" | "Int16" => 2,
        "ushort" | "UInt16" => 3,
        "uint" | "UInt32" => 4,
        _ => return None,
    };
    Some(kind)
}

fn binary_type(op: BinaryOp, a: &StaticType, b: &StaticType) -> Option<StaticType> {
    use StaticType as T;
    let numeric = |t: &T| matches!(t, T::Int | T::Double | T::Char | T::Enum(_));
    let json = |t: &T| matches!(t, T::JToken | T::JObject | T::JArray | T::JProperty);
    let dynamic = a.is_dynamic() || b.is_dynamic();
    match op {
        BinaryOp::Add => Some(match (a, b) {
            (T::String, _) | (_, T::String) => T::String,
            _ if dynamic => T::Object,
            (T::Double, x) | (x, T::Double) if numeric(x) => T::Double,
            _ if numeric(a) && numeric(b) => T::Int,
            (T::DateTime, T::TimeSpan) | (T::TimeSpan, T::DateTime) => T::DateTime,
            (T::TimeSpan, T::TimeSpan) => T::TimeSpan,
            _ if json(a) || json(b) => T::Object,
            _ => return None,
        }),
        BinaryOp::Sub => Some(match (a, b) {
            _ if dynamic => T::Object,
            (T::Double, x) | (x, T::Double) if numeric(x) => T::Double,
            _ if numeric(a) && numeric(b) => T::Int,
            (T::DateTime, T::DateTime) | (T::TimeSpan, T::TimeSpan) => T::TimeSpan,
            (T::DateTime, T::TimeSpan) => T::DateTime,
            _ => return None,
        }),
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => Some(match (a, b) {
            _ if dynamic => T::Object,
            (T::Double, x) | (x, T::Double) if numeric(x) => T::Double,
            _ if numeric(a) && numeric(b) => T::Int,
            _ => return None,
        }),
        BinaryOp::Eq | BinaryOp::Ne => {
            let comparable =
                dynamic || json(a) || json(b) || a.assignable_to(b) || b.assignable_to(a) || (numeric(a) && numeric(b));
            comparable.then_some(T::Bool)
        }
        _ => {
            let ordered = |t: &T| numeric(t) || matches!(t, T::DateTime | T::TimeSpan) || json(t) || t.is_dynamic();
            (ordered(a) && ordered(b)).then_some(T::Bool)
        }
    }
}
