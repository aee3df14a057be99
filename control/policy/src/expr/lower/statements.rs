//! The statements of `@{ ... }` blocks.
//!
//! The stack is empty at every statement boundary: locals, loop iterators and the block's
//! result all live in local slots. `return e;` stores `e` into the result slot and jumps to
//! the block's end, which loads it, so the block as a whole leaves one value like an
//! expression. Every path must end in `return` (checked as C# does, before lowering).

use portcullis_contract::program::Op;

use super::super::lexer::Span;
use super::super::syntax::{Declarator, Expr, ExprKind, Stmt, StmtKind, TypeName};
use super::super::types::{self, StaticType};
use super::{BlockState, LoopLabels, Lowerer, R, error};

impl Lowerer<'_> {
    /// Lowers a whole block; `close` is its closing brace.
    pub(super) fn block(&mut self, statements: &[Stmt], close: Span) -> R<StaticType> {
        if !statements.iter().any(always_returns) {
            return error(close, "not all code paths return a value: a policy expression block must end with `return`");
        }
        let result = self.temp();
        let end = self.code.label();
        self.block = Some(BlockState { result, end, returns: Vec::new() });
        self.statements(statements)?;
        self.code.place(end);
        self.emit(Op::LoadLocal(result));
        let returns = self.block.take().map(|b| b.returns).unwrap_or_default();
        let ty = returns
            .iter()
            .skip(1)
            .fold(returns.first().cloned().unwrap_or(StaticType::Object), |a, b| types::unify(&a, b));
        Ok(if ty == StaticType::Null { StaticType::Object } else { ty })
    }

    fn statements(&mut self, statements: &[Stmt]) -> R<()> {
        self.push_scope();
        for statement in statements {
            self.statement(statement)?;
        }
        self.pop_scope();
        Ok(())
    }

    fn statement(&mut self, statement: &Stmt) -> R<()> {
        match &statement.kind {
            StmtKind::Local { ty, declarators } => self.locals(ty.as_ref(), declarators),
            StmtKind::Expr(e) => self.expression_statement(e),
            StmtKind::If { condition, then, otherwise } => self.if_statement(condition, then, otherwise.as_deref()),
            StmtKind::Foreach { ty, name, name_span, sequence, body } => {
                self.foreach(ty.as_ref(), name, *name_span, sequence, body)
            }
            StmtKind::For { init, condition, step, body } => self.for_statement(init, condition.as_ref(), step, body),
            StmtKind::While { condition, body } => {
                let top = self.code.label();
                let exit = self.code.label();
                self.code.place(top);
                self.condition(condition)?;
                self.jump(Op::JumpIfFalse(0), exit);
                self.loop_body(body, LoopLabels { exit, next: top })?;
                self.jump(Op::Jump(0), top);
                self.code.place(exit);
                Ok(())
            }
            StmtKind::DoWhile { body, condition } => {
                let top = self.code.label();
                let next = self.code.label();
                let exit = self.code.label();
                self.code.place(top);
                self.loop_body(body, LoopLabels { exit, next })?;
                self.code.place(next);
                self.condition(condition)?;
                self.jump(Op::JumpIfTrue(0), top);
                self.code.place(exit);
                Ok(())
            }
            StmtKind::Return(value) => self.return_statement(value.as_ref(), statement.span),
            StmtKind::Break | StmtKind::Continue => {
                let Some(labels) = self.loops.last().copied() else {
                    return error(statement.span, "`break` and `continue` must be inside a loop");
                };
                let target = if matches!(statement.kind, StmtKind::Break) { labels.exit } else { labels.next };
                self.jump(Op::Jump(0), target);
                Ok(())
            }
            StmtKind::Block(statements) => self.statements(statements),
            StmtKind::Empty => Ok(()),
        }
    }

    fn if_statement(&mut self, condition: &Expr, then: &Stmt, otherwise: Option<&Stmt>) -> R<()> {
        self.condition(condition)?;
        let otherwise_label = self.code.label();
        self.jump(Op::JumpIfFalse(0), otherwise_label);
        self.scoped(then)?;
        match otherwise {
            Some(otherwise) => {
                let end = self.code.label();
                self.jump(Op::Jump(0), end);
                self.code.place(otherwise_label);
                self.scoped(otherwise)?;
                self.code.place(end);
            }
            None => self.code.place(otherwise_label),
        }
        Ok(())
    }

    fn for_statement(&mut self, init: &[Stmt], condition: Option<&Expr>, step: &[Expr], body: &Stmt) -> R<()> {
        self.push_scope();
        for statement in init {
            self.statement(statement)?;
        }
        let top = self.code.label();
        let next = self.code.label();
        let exit = self.code.label();
        self.code.place(top);
        if let Some(condition) = condition {
            self.condition(condition)?;
            self.jump(Op::JumpIfFalse(0), exit);
        }
        self.loop_body(body, LoopLabels { exit, next })?;
        self.code.place(next);
        for e in step {
            self.expression_statement(e)?;
        }
        self.jump(Op::Jump(0), top);
        self.code.place(exit);
        self.pop_scope();
        Ok(())
    }

    /// `return e;`: stores `e` into the block's result and jumps to its end.
    fn return_statement(&mut self, value: Option<&Expr>, span: Span) -> R<()> {
        let Some(value) = value else {
            return error(span, "a policy expression block must return a value (`return x;`)");
        };
        let ty = self.expr(value)?;
        let Some(block) = &mut self.block else {
            return error(span, "`return` outside a block");
        };
        block.returns.push(ty);
        let (result, end) = (block.result, block.end);
        self.emit(Op::StoreLocal(result));
        self.jump(Op::Jump(0), end);
        Ok(())
    }

    /// A nested statement in its own scope (an `if` branch, a loop body).
    fn scoped(&mut self, statement: &Stmt) -> R<()> {
        self.push_scope();
        let result = self.statement(statement);
        self.pop_scope();
        result
    }

    fn loop_body(&mut self, body: &Stmt, labels: LoopLabels) -> R<()> {
        self.loops.push(labels);
        let result = self.scoped(body);
        self.loops.pop();
        result
    }

    fn locals(&mut self, ty: Option<&TypeName>, declarators: &[Declarator]) -> R<()> {
        let declared = match ty {
            Some(ty) => Some(self.resolve_type(ty)?),
            None => None,
        };
        for declarator in declarators {
            let ty = match (&declared, &declarator.init) {
                (None, None) => {
                    return error(declarator.span, "an implicitly typed variable (`var`) must be initialized");
                }
                (declared, Some(init)) => {
                    let init_ty = self.expr(init)?;
                    match declared {
                        None if init_ty == StaticType::Null => {
                            return error(
                                init.span,
                                "cannot infer a type from `null`: declare the variable with its type",
                            );
                        }
                        None => init_ty,
                        Some(declared) => {
                            let char_to_string = *declared == StaticType::String && init_ty == StaticType::Char;
                            if !(init_ty.assignable_to(declared) || char_to_string) {
                                return error(
                                    init.span,
                                    format!("cannot assign {init_ty} to a variable of type {declared}"),
                                );
                            }
                            declared.clone()
                        }
                    }
                }
                (Some(declared), None) => declared.clone(),
            };
            let slot = self.declare(&declarator.name, declarator.span, ty)?;
            if declarator.init.is_some() {
                self.emit(Op::StoreLocal(slot));
            } else {
                // C# requires assignment before use; start from null like the VM's fresh slots.
                self.emit(Op::Null);
                self.emit(Op::StoreLocal(slot));
            }
        }
        Ok(())
    }

    /// Calls, assignments, `++`/`--` and `new` (C#'s statement expressions); the value is dropped.
    fn expression_statement(&mut self, e: &Expr) -> R<()> {
        match &e.kind {
            ExprKind::Assign { op, target, value } => {
                self.assign(*op, target, value, false, e.span)?;
            }
            ExprKind::Step { increment, prefix, target } => {
                self.step(*increment, *prefix, target, false, e.span)?;
            }
            ExprKind::Call { .. } | ExprKind::New { .. } => {
                self.expr(e)?;
                self.emit(Op::Pop);
            }
            _ => {
                return error(
                    e.span,
                    "only assignments, calls, increments, decrements and `new` can be used as a statement",
                );
            }
        }
        Ok(())
    }

    fn foreach(&mut self, ty: Option<&TypeName>, name: &str, name_span: Span, sequence: &Expr, body: &Stmt) -> R<()> {
        let sequence_ty = self.expr(sequence)?;
        let Some(element) = sequence_ty.element() else {
            return error(
                sequence.span,
                format!("foreach needs a sequence, but `{}` is {sequence_ty}", self.quote(sequence.span)),
            );
        };
        // `foreach (T x in seq)` converts each element to `T` explicitly, as C# does.
        let (element, cast) = match ty {
            Some(ty) => {
                let declared = self.resolve_type(ty)?;
                if !element.castable_to(&declared) {
                    return error(ty.span, format!("the elements are {element}, not {declared}"));
                }
                let cast =
                    if declared == element || declared.is_dynamic() { None } else { types::value_type(&declared) };
                (declared, cast)
            }
            None => (element, None),
        };
        let iterator = self.temp();
        self.emit(Op::IterInit(iterator));
        let top = self.code.label();
        let exit = self.code.label();
        self.code.place(top);
        self.jump(Op::IterNext(iterator, 0), exit);
        if let Some(vt) = cast {
            self.emit(Op::Cast(vt));
        }
        self.push_scope();
        let slot = self.declare(name, name_span, element)?;
        self.emit(Op::StoreLocal(slot));
        self.loop_body(body, LoopLabels { exit, next: top })?;
        self.pop_scope();
        self.jump(Op::Jump(0), top);
        self.code.place(exit);
        Ok(())
    }
}

/// Whether control can never fall off the end of `statement` (C#'s reachability, simplified:
/// `return`, blocks containing one, `if`/`else` with both branches returning, and infinite
/// loops without `break`).
fn always_returns(statement: &Stmt) -> bool {
    match &statement.kind {
        StmtKind::Return(_) => true,
        StmtKind::Block(statements) => statements.iter().any(always_returns),
        StmtKind::If { then, otherwise: Some(otherwise), .. } => always_returns(then) && always_returns(otherwise),
        StmtKind::While { condition, body } => is_true(condition) && !breaks(body),
        StmtKind::For { condition, body, .. } => condition.as_ref().is_none_or(is_true) && !breaks(body),
        StmtKind::DoWhile { body, condition } => always_returns(body) || (is_true(condition) && !breaks(body)),
        _ => false,
    }
}

fn is_true(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Bool(true))
}

/// Whether `statement` contains a `break` of the enclosing loop (not of a nested one).
fn breaks(statement: &Stmt) -> bool {
    match &statement.kind {
        StmtKind::Break => true,
        StmtKind::Block(statements) => statements.iter().any(breaks),
        StmtKind::If { then, otherwise, .. } => breaks(then) || otherwise.as_deref().is_some_and(breaks),
        _ => false,
    }
}
