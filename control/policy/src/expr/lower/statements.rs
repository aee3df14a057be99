//! The statements of `@{ ... }` blocks.
//!
//! The stack is empty at every statement boundary: locals, loop iterators and the block's
//! result all live in local slots. `return e;` stores `e` into the result slot and jumps to
//! the block's end, which loads it, so the block as a whole leaves one value like an
//! expression. Every path must end in `return` (checked as C# does, before lowering).

use portcullis_contract::program::Op;

use super::super::lexer::Span;
use super::super::syntax::{Catch, Declarator, Expr, ExprKind, Stmt, StmtKind, SwitchSection, TypeName};
use super::super::types::{self, StaticType};
use super::{BlockState, LoopLabels, Lowerer, R, TryFrame, error};

/// Local functions calling local functions, inlined: real ones nest one or two deep.
const LOCAL_FUNCTION_DEPTH_MAX: usize = 8;

impl Lowerer<'_> {
    /// Lowers a whole block; `close` is its closing brace.
    pub(super) fn block(&mut self, statements: &[Stmt], close: Span) -> R<StaticType> {
        if !statements.iter().any(always_returns) {
            return error(close, "not all code paths return a value: a policy expression block must end with `return`");
        }
        let result = self.temp();
        let end = self.code.label();
        self.block = Some(BlockState { result, end, returns: Vec::new(), void: false });
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
        // A local function is visible in its whole block, before its declaration too.
        let functions = self.functions.len();
        for statement in statements {
            if let StmtKind::LocalFunction(function) = &statement.kind {
                if self.functions[functions..].iter().any(|f| f.name == function.name) {
                    return error(
                        function.name_span,
                        format!("a local function named `{}` is already defined", function.name),
                    );
                }
                self.functions.push(function.clone());
            }
        }
        let mut lowered = Ok(());
        for statement in statements {
            lowered = self.statement(statement);
            if lowered.is_err() {
                break;
            }
        }
        self.functions.truncate(functions);
        self.pop_scope();
        lowered
    }

    /// A call of the local function `function`: its arguments into fresh locals named by its
    /// parameters, then its body inline (its `return`s end the call, not the block).
    pub(super) fn inline_call(
        &mut self,
        function: &std::rc::Rc<super::super::syntax::LocalFunction>,
        args: &[super::super::syntax::Arg],
        span: Span,
    ) -> R<StaticType> {
        if self.inlining.contains(&function.name) {
            return error(
                span,
                format!("`{}` calls itself: recursive local functions are not supported", function.name),
            );
        }
        if self.inlining.len() >= LOCAL_FUNCTION_DEPTH_MAX {
            return error(span, "local functions call each other too deeply");
        }
        let what = function.name.clone();
        self.expect_args(args, function.params.len(), function.params.len(), &what, span)?;
        self.expect_plain(args, &what)?;
        let ret = match types::normalize_type_name(&function.ret.name) {
            "void" => None,
            _ => Some(self.resolve_type(&function.ret)?),
        };
        let mut bound = Vec::with_capacity(args.len());
        for (arg, (ty, name, _)) in args.iter().zip(&function.params) {
            let param = self.resolve_type(ty)?;
            let arg_ty = self.expr(&arg.value)?;
            let char_to_string = param == StaticType::String && arg_ty == StaticType::Char;
            if !(arg_ty.assignable_to(&param) || char_to_string) {
                return error(arg.value.span, format!("`{what}` takes {param} here, not {arg_ty}"));
            }
            let slot = self.temp();
            self.emit(Op::StoreLocal(slot));
            bound.push(super::Local { name: name.clone(), slot, ty: param });
        }
        if ret.is_some() && !function.body.iter().any(always_returns) {
            return error(function.name_span, format!("not all code paths of `{what}` return a value"));
        }
        let result = self.temp();
        let end = self.code.label();
        let saved_block = self.block.replace(BlockState { result, end, returns: Vec::new(), void: ret.is_none() });
        let saved_loops = std::mem::take(&mut self.loops);
        let saved_tries = std::mem::take(&mut self.tries);
        self.inlining.push(what.clone());
        // The parameters shadow the caller's names (as C# lets them).
        self.scopes.push(bound);
        let lowered = self.statements(&function.body);
        self.scopes.pop();
        self.inlining.pop();
        self.tries = saved_tries;
        self.loops = saved_loops;
        let returns = std::mem::replace(&mut self.block, saved_block).map(|b| b.returns).unwrap_or_default();
        lowered?;
        self.code.place(end);
        self.emit(Op::LoadLocal(result));
        let Some(ret) = ret else { return Ok(StaticType::Object) };
        for ty in &returns {
            let char_to_string = ret == StaticType::String && *ty == StaticType::Char;
            if !(ty.assignable_to(&ret) || char_to_string) {
                return error(function.ret.span, format!("`{what}` returns {ret}, but a `return` gives {ty}"));
            }
        }
        Ok(ret)
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
                let tries = self.tries.len();
                self.loop_body(body, LoopLabels { exit, next: Some(top), tries })?;
                self.jump(Op::Jump(0), top);
                self.code.place(exit);
                Ok(())
            }
            StmtKind::DoWhile { body, condition } => {
                let top = self.code.label();
                let next = self.code.label();
                let exit = self.code.label();
                self.code.place(top);
                let tries = self.tries.len();
                self.loop_body(body, LoopLabels { exit, next: Some(next), tries })?;
                self.code.place(next);
                self.condition(condition)?;
                self.jump(Op::JumpIfTrue(0), top);
                self.code.place(exit);
                Ok(())
            }
            StmtKind::Return(value) => self.return_statement(value.as_ref(), statement.span),
            StmtKind::Break => {
                let Some(labels) = self.loops.last().copied() else {
                    return error(statement.span, "`break` must be inside a loop or a switch");
                };
                self.unwind(labels.tries)?;
                self.jump(Op::Jump(0), labels.exit);
                Ok(())
            }
            StmtKind::Continue => {
                let Some((next, tries)) = self.loops.iter().rev().find_map(|l| l.next.map(|next| (next, l.tries)))
                else {
                    return error(statement.span, "`continue` must be inside a loop");
                };
                self.unwind(tries)?;
                self.jump(Op::Jump(0), next);
                Ok(())
            }
            StmtKind::Block(statements) => self.statements(statements),
            StmtKind::Empty => Ok(()),
            StmtKind::Try { body, catches, finally } => self.try_statement(body, catches, finally.as_deref()),
            StmtKind::Throw(Some(value)) => self.throw_value(value),
            StmtKind::Throw(None) => {
                let Some(slot) = self.tries.iter().rev().find_map(|frame| frame.exception) else {
                    return error(statement.span, "`throw;` (a rethrow) must be inside a `catch`");
                };
                self.emit(Op::LoadLocal(slot));
                self.emit(Op::Throw);
                Ok(())
            }
            StmtKind::Switch { subject, sections } => self.switch_statement(subject, sections),
            // Registered by `statements`, lowered where called.
            StmtKind::LocalFunction(_) => Ok(()),
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
        let tries = self.tries.len();
        self.loop_body(body, LoopLabels { exit, next: Some(next), tries })?;
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
            if let Some(block) = self.block.as_ref().filter(|b| b.void) {
                let end = block.end;
                self.unwind(0)?;
                self.jump(Op::Jump(0), end);
                return Ok(());
            }
            return error(span, "a policy expression block must return a value (`return x;`)");
        };
        let ty = self.expr(value)?;
        let Some(block) = &mut self.block else {
            return error(span, "`return` outside a block");
        };
        block.returns.push(ty);
        let (result, end) = (block.result, block.end);
        self.emit(Op::StoreLocal(result));
        self.unwind(0)?;
        self.jump(Op::Jump(0), end);
        Ok(())
    }

    /// Leaves the `try`s above `depth` on the way to a `return`, `break` or `continue`: exits
    /// their handlers and runs their `finally` blocks, innermost first.
    fn unwind(&mut self, depth: usize) -> R<()> {
        let frames = self.tries.clone();
        for at in (depth..frames.len()).rev() {
            let frame = &frames[at];
            for _ in 0..frame.handlers {
                self.emit(Op::TryExit);
            }
            if let Some(finally) = &frame.finally {
                self.tries.truncate(at);
                let lowered = self.statements(finally);
                self.tries.clone_from(&frames);
                lowered?;
            }
        }
        Ok(())
    }

    /// `try { body } catch (T e) { .. } finally { .. }`:
    ///
    /// ```text
    ///   [TryEnter fin]  TryEnter catch  body  TryExit  Jump after
    ///   catch: (message) StoreLocal e   catch body
    ///   after: [TryExit  finally  Jump end
    ///   fin: (message) StoreLocal t  finally  LoadLocal t  Throw]
    ///   end:
    /// ```
    ///
    /// The VM does not tell exception types apart: every failure goes to the first `catch`.
    fn try_statement(&mut self, body: &[Stmt], catches: &[Catch], finally: Option<&[Stmt]>) -> R<()> {
        let handlers = usize::from(finally.is_some()) + usize::from(!catches.is_empty());
        if self.open_handlers + handlers > portcullis_contract::program::TRY_DEPTH_MAX {
            return error(body.first().map_or(Span::default(), |s| s.span), "`try` statements nest too deeply");
        }
        self.open_handlers += handlers;
        let lowered = self.try_statement_inner(body, catches, finally);
        self.open_handlers -= handlers;
        lowered
    }

    fn try_statement_inner(&mut self, body: &[Stmt], catches: &[Catch], finally: Option<&[Stmt]>) -> R<()> {
        if finally.is_some_and(|f| f.iter().any(contains_exit)) {
            return error(
                finally.and_then(|f| f.first()).map_or(Span::default(), |s| s.span),
                "control cannot leave the body of a `finally` clause (`return`, `break` or `continue`)",
            );
        }
        let fin_handler = self.code.label();
        let catch_handler = self.code.label();
        let after = self.code.label();
        let end = self.code.label();
        if finally.is_some() {
            self.jump(Op::TryEnter { handler: 0 }, fin_handler);
        }
        let catch = catches.first();
        if catch.is_some() {
            self.jump(Op::TryEnter { handler: 0 }, catch_handler);
        }
        let handlers = usize::from(finally.is_some()) + usize::from(catch.is_some());
        self.tries.push(TryFrame { handlers, finally: finally.map(<[Stmt]>::to_vec), exception: None });
        let lowered = self.try_body(body, catch, catch_handler, after);
        self.tries.pop();
        lowered?;
        if let Some(finally) = finally {
            self.emit(Op::TryExit);
            self.statements(finally)?;
            self.jump(Op::Jump(0), end);
            self.code.place(fin_handler);
            let exception = self.temp();
            self.emit(Op::StoreLocal(exception));
            self.statements(finally)?;
            self.emit(Op::LoadLocal(exception));
            self.emit(Op::Throw);
            self.code.place(end);
        }
        Ok(())
    }

    /// The `try` body and its `catch` (with the try's frame pushed).
    fn try_body(&mut self, body: &[Stmt], catch: Option<&Catch>, handler: super::Label, after: super::Label) -> R<()> {
        self.statements(body)?;
        let Some(catch) = catch else { return Ok(()) };
        self.emit(Op::TryExit);
        self.jump(Op::Jump(0), after);
        self.code.place(handler);
        if let Some(frame) = self.tries.last_mut() {
            frame.handlers -= 1;
        }
        if let Some(ty) = &catch.ty {
            let resolved = self.resolve_type(ty)?;
            if resolved != StaticType::Exception {
                return error(ty.span, format!("`catch` takes an exception type, not {resolved}"));
            }
        }
        self.push_scope();
        let slot = match &catch.name {
            Some((name, span)) => self.declare(name, *span, StaticType::Exception)?,
            None => self.temp(),
        };
        self.emit(Op::StoreLocal(slot));
        if let Some(frame) = self.tries.last_mut() {
            frame.exception = Some(slot);
        }
        let lowered = self.statements(&catch.body);
        self.pop_scope();
        lowered?;
        self.code.place(after);
        Ok(())
    }

    /// `switch (x) { case a: .. }`: the subject in a local, one equality test per label, then
    /// the sections in order (`break` leaves the switch).
    fn switch_statement(&mut self, subject: &Expr, sections: &[SwitchSection]) -> R<()> {
        let subject_ty = self.expr(subject)?;
        let value = self.temp();
        self.emit(Op::StoreLocal(value));
        let exit = self.code.label();
        let targets: Vec<super::Label> = sections.iter().map(|_| self.code.label()).collect();
        let mut default = None;
        for (section, target) in sections.iter().zip(&targets) {
            for label in &section.labels {
                let Some(label) = label else {
                    if default.is_some() {
                        return error(
                            section.body.first().map_or(subject.span, |s| s.span),
                            "a switch has one `default`",
                        );
                    }
                    default = Some(*target);
                    continue;
                };
                self.emit(Op::LoadLocal(value));
                let label_ty = self.expr(label)?;
                let comparable = label_ty.assignable_to(&subject_ty)
                    || subject_ty.assignable_to(&label_ty)
                    || (subject_ty == StaticType::String && label_ty == StaticType::Char);
                if !comparable {
                    return error(label.span, format!("a case of {label_ty} cannot match a switch on {subject_ty}"));
                }
                self.emit(Op::Eq);
                self.jump(Op::JumpIfTrue(0), *target);
            }
        }
        self.jump(Op::Jump(0), default.unwrap_or(exit));
        let tries = self.tries.len();
        self.loops.push(LoopLabels { exit, next: None, tries });
        let mut lowered = Ok(());
        for (section, target) in sections.iter().zip(&targets) {
            self.code.place(*target);
            lowered = self.statements(&section.body);
            if lowered.is_err() {
                break;
            }
            // C# forbids falling into the next section; leave the switch as `break` would.
            self.jump(Op::Jump(0), exit);
        }
        self.loops.pop();
        lowered?;
        self.code.place(exit);
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
        self.loop_body(body, LoopLabels { exit, next: Some(top), tries: self.tries.len() })?;
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
        StmtKind::Return(_) | StmtKind::Throw(_) => true,
        StmtKind::Try { body, catches, finally } => {
            finally.as_ref().is_some_and(|f| f.iter().any(always_returns))
                || (body.iter().any(always_returns) && catches.iter().all(|c| c.body.iter().any(always_returns)))
        }
        StmtKind::Switch { sections, .. } => {
            sections.iter().any(|s| s.labels.iter().any(Option::is_none))
                && sections.iter().all(|s| s.body.iter().any(always_returns) && !s.body.iter().any(breaks))
        }
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
        StmtKind::Try { body, catches, finally } => {
            body.iter().any(breaks)
                || catches.iter().any(|c| c.body.iter().any(breaks))
                || finally.as_ref().is_some_and(|f| f.iter().any(breaks))
        }
        _ => false,
    }
}

/// Whether `statement` has a `return`, `break` or `continue` that would leave a `finally`.
fn contains_exit(statement: &Stmt) -> bool {
    match &statement.kind {
        StmtKind::Return(_) | StmtKind::Break | StmtKind::Continue => true,
        StmtKind::Block(statements) => statements.iter().any(contains_exit),
        StmtKind::If { then, otherwise, .. } => contains_exit(then) || otherwise.as_deref().is_some_and(contains_exit),
        StmtKind::Try { body, catches, finally } => {
            body.iter().any(contains_exit)
                || catches.iter().any(|c| c.body.iter().any(contains_exit))
                || finally.as_ref().is_some_and(|f| f.iter().any(contains_exit))
        }
        _ => false,
    }
}
