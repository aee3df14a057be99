//! LINQ methods with a lambda (`seq.Any(x => ..)`, `Where`, `Select`, ...), lowered into loops.
//!
//! The VM has no closures: the sequence goes into an iterator local (`IterInit`), the lambda's
//! parameter is a local the loop stores each element into, and the body is lowered inline.
//! Accumulators (the list of `Where`/`Select`, the counter of `Count`) are locals too, so the
//! stack holds nothing of the loop's own between iterations: its depth at the loop head is the
//! depth before the sequence was pushed, on the first entry and on every back edge alike.

use portcullis_contract::program::{Builtin, Op};

use crate::code::Label;

use super::super::lexer::Span;
use super::super::syntax::{Arg, Expr, ExprKind};
use super::super::types::StaticType;
use super::{Lowerer, R, error};

/// What the loop computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Any,
    All,
    Where,
    Select,
    First,
    FirstOrDefault,
    LastOrDefault,
    Count,
    Sum,
}

impl Shape {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "Any" | "Exists" => Self::Any,
            "All" | "TrueForAll" => Self::All,
            "Where" | "FindAll" => Self::Where,
            "Select" => Self::Select,
            "First" => Self::First,
            "FirstOrDefault" | "Find" => Self::FirstOrDefault,
            "LastOrDefault" | "FindLast" => Self::LastOrDefault,
            "Count" => Self::Count,
            "Sum" => Self::Sum,
            _ => return None,
        })
    }

    /// Whether the lambda is a predicate (must be bool).
    fn is_predicate(self) -> bool {
        !matches!(self, Self::Select | Self::Sum)
    }
}

/// One lambda loop: its head, exhaustion, end and early exit (Any/All) labels; the locals of
/// the lambda's parameter and of the accumulator.
#[derive(Debug, Clone, Copy)]
struct LambdaLoop {
    top: Label,
    done: Label,
    end: Label,
    hit: Label,
    item: u16,
    accumulator: u16,
}

impl Lowerer<'_> {
    /// `sequence.name(lambda)` with the sequence on the stack.
    pub(super) fn linq(
        &mut self,
        sequence: &StaticType,
        sequence_span: Span,
        name: &str,
        args: &[Arg],
        span: Span,
    ) -> R<StaticType> {
        let [arg] = args else {
            return error(span, format!("`{name}` takes one lambda argument here"));
        };
        let ExprKind::Lambda { params, body } = &arg.value.kind else {
            return error(arg.value.span, format!("`{name}` expects a lambda here"));
        };
        let (param, index) = match params.as_slice() {
            [param] => (param, None),
            // `(x, i) => ..`: the element and its position (Select, Where and friends).
            [param, index] if !matches!(name, "OrderBy" | "OrderByDescending" | "Exists" | "TrueForAll") => {
                (param, Some(index))
            }
            _ => return error(arg.value.span, format!("`{name}` takes a lambda with one parameter (`x => ...`)")),
        };
        let Some(element) = sequence.element() else {
            return error(sequence_span, format!("`{}` is {sequence}, not a sequence", self.quote(sequence_span)));
        };
        if matches!(name, "OrderBy" | "OrderByDescending") {
            return self.order_by(name, param, body, &element, span);
        }
        // `Single(p)`, `Last(p)` ... are a `Where` loop then the plain builtin; `Max(f)`,
        // `Average(f)` ... a `Select` loop then the builtin.
        let then = match name {
            "Single" => Some((Shape::Where, Builtin::SeqSingle)),
            "SingleOrDefault" => Some((Shape::Where, Builtin::SeqSingleOrDefault)),
            "Last" => Some((Shape::Where, Builtin::SeqLast)),
            "Min" => Some((Shape::Select, Builtin::SeqMin)),
            "Max" => Some((Shape::Select, Builtin::SeqMax)),
            "Average" => Some((Shape::Select, Builtin::SeqAverage)),
            _ => None,
        };
        if let Some((shape, builtin)) = then {
            let list = self.lambda_loop(shape, element, param, index, body)?;
            self.call(builtin, 1, span)?;
            return Ok(match builtin {
                Builtin::SeqAverage => StaticType::Double,
                _ => list.element_or_object(),
            });
        }
        let Some(shape) = Shape::of(name) else {
            return error(
                span,
                format!(
                    "`{name}` with a lambda is not supported (Any, All, Where, Select, First, FirstOrDefault, Last, LastOrDefault, Single, SingleOrDefault, Count, Sum, Min, Max, Average, Array.Exists)"
                ),
            );
        };
        self.lambda_loop(shape, element, param, index, body)
    }

    fn lambda_loop(
        &mut self,
        shape: Shape,
        element: StaticType,
        param: &(String, Span),
        index: Option<&(String, Span)>,
        body: &Expr,
    ) -> R<StaticType> {
        let iterator = self.temp();
        self.emit(Op::IterInit(iterator));
        // The position counter starts at -1 and is bumped as each element is bound.
        let position = match index {
            Some(_) => {
                let slot = self.temp();
                self.emit(Op::Int(-1));
                self.emit(Op::StoreLocal(slot));
                Some(slot)
            }
            None => None,
        };
        let needs_accumulator =
            matches!(shape, Shape::Where | Shape::Select | Shape::Count | Shape::Sum | Shape::LastOrDefault);
        // Shapes without an accumulator never touch this slot.
        let accumulator = if needs_accumulator { self.temp() } else { iterator };
        match shape {
            Shape::Where | Shape::Select => self.call(Builtin::ListNew, 0, body.span)?,
            Shape::Count | Shape::Sum => self.emit(Op::Int(0)),
            Shape::LastOrDefault => self.emit(Op::Null),
            _ => {}
        }
        if needs_accumulator {
            self.emit(Op::StoreLocal(accumulator));
        }
        let top = self.code.label();
        let done = self.code.label();
        let end = self.code.label();
        let hit = self.code.label();
        self.code.place(top);
        self.jump(Op::IterNext(iterator, 0), done);
        self.push_scope();
        let item = self.declare(&param.0, param.1, element.clone())?;
        self.emit(Op::StoreLocal(item));
        if let (Some(slot), Some((name, span))) = (position, index) {
            self.emit(Op::LoadLocal(slot));
            self.emit(Op::Int(1));
            self.emit(Op::Add);
            self.emit(Op::StoreLocal(slot));
            self.bind(name, *span, slot, StaticType::Int)?;
        }
        if matches!(shape, Shape::Select | Shape::Sum) {
            // The list (Select) or the running sum (Sum) goes under the lambda's value.
            self.emit(Op::LoadLocal(accumulator));
        }
        let body_ty = self.expr(body)?;
        self.pop_scope();
        if shape.is_predicate() && !body_ty.is_dynamic() && body_ty != StaticType::Bool {
            return error(
                body.span,
                format!("the lambda must return a bool, but `{}` is {body_ty}", self.quote(body.span)),
            );
        }
        let parts = LambdaLoop { top, done, end, hit, item, accumulator };
        let ty = self.loop_tail(shape, parts, element, body_ty, body.span)?;
        self.code.place(end);
        Ok(ty)
    }

    /// After the lambda's value: what each shape does with it, and the exit value when the
    /// sequence is exhausted.
    fn loop_tail(
        &mut self,
        shape: Shape,
        parts: LambdaLoop,
        element: StaticType,
        body_ty: StaticType,
        span: Span,
    ) -> R<StaticType> {
        let LambdaLoop { top, done, end, hit, item, accumulator } = parts;
        let ty = match shape {
            Shape::Any | Shape::All => {
                // Any: a true predicate ends the loop with true; All: a false one with false.
                let any = shape == Shape::Any;
                self.jump(if any { Op::JumpIfTrue(0) } else { Op::JumpIfFalse(0) }, hit);
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::Bool(!any));
                self.jump(Op::Jump(0), end);
                self.code.place(hit);
                self.emit(Op::Bool(any));
                StaticType::Bool
            }
            Shape::Where => {
                self.jump(Op::JumpIfFalse(0), top);
                self.emit(Op::LoadLocal(accumulator));
                self.emit(Op::LoadLocal(item));
                self.call(Builtin::ListAdd, 2, span)?;
                self.emit(Op::Pop);
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::LoadLocal(accumulator));
                StaticType::List(Box::new(element))
            }
            Shape::Select => {
                self.call(Builtin::ListAdd, 2, span)?;
                self.emit(Op::Pop);
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::LoadLocal(accumulator));
                StaticType::List(Box::new(if body_ty == StaticType::Null { StaticType::Object } else { body_ty }))
            }
            Shape::First | Shape::FirstOrDefault => {
                self.jump(Op::JumpIfFalse(0), top);
                self.emit(Op::LoadLocal(item));
                self.jump(Op::Jump(0), end);
                self.code.place(done);
                if shape == Shape::First {
                    // No element matched: `First` throws, as `[].First()` does in the VM.
                    self.emit(Op::MakeArray(0));
                    self.call(Builtin::SeqFirst, 1, span)?;
                } else {
                    self.emit(Op::Null);
                }
                element
            }
            Shape::LastOrDefault => {
                self.jump(Op::JumpIfFalse(0), top);
                self.emit(Op::LoadLocal(item));
                self.emit(Op::StoreLocal(accumulator));
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::LoadLocal(accumulator));
                element
            }
            Shape::Count => {
                self.jump(Op::JumpIfFalse(0), top);
                self.emit(Op::LoadLocal(accumulator));
                self.emit(Op::Int(1));
                self.emit(Op::Add);
                self.emit(Op::StoreLocal(accumulator));
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::LoadLocal(accumulator));
                StaticType::Int
            }
            Shape::Sum => {
                if !body_ty.is_dynamic() && !matches!(body_ty, StaticType::Int | StaticType::Double) {
                    return error(span, format!("Sum needs numbers, but the lambda returns {body_ty}"));
                }
                self.emit(Op::Add);
                self.emit(Op::StoreLocal(accumulator));
                self.jump(Op::Jump(0), top);
                self.code.place(done);
                self.emit(Op::LoadLocal(accumulator));
                if body_ty.is_dynamic() { StaticType::Object } else { body_ty }
            }
        };
        Ok(ty)
    }

    /// `OrderBy(x => x)` sorts by the elements themselves (`SeqOrder`); `OrderBy(x => key)`
    /// computes the keys with a `Select` loop over a copy of the sequence, then sorts the
    /// elements by them (`SeqOrderByKeys`).
    fn order_by(
        &mut self,
        name: &str,
        param: &(String, Span),
        body: &Expr,
        element: &StaticType,
        span: Span,
    ) -> R<StaticType> {
        if matches!(&body.kind, ExprKind::Name(n) if *n == param.0) {
            self.call(Builtin::SeqOrder, 1, span)?;
        } else {
            self.emit(Op::Dup);
            let keys = self.lambda_loop(Shape::Select, element.clone(), param, None, body)?;
            let key = keys.element_or_object();
            let ordered = |t: &StaticType| {
                t.is_dynamic()
                    || matches!(
                        t,
                        StaticType::String
                            | StaticType::Int
                            | StaticType::Double
                            | StaticType::DateTime
                            | StaticType::TimeSpan
                            | StaticType::Char
                            | StaticType::Bool
                            | StaticType::JToken
                    )
            };
            if !ordered(&key) {
                return error(body.span, format!("`{name}` needs keys that can be ordered, not {key}"));
            }
            self.call(Builtin::SeqOrderByKeys, 2, span)?;
        }
        if name == "OrderByDescending" {
            self.call(Builtin::SeqReverse, 1, span)?;
        }
        Ok(StaticType::array_of(element.clone()))
    }
}
