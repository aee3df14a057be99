//! The interpreter: runs one program (a section) over a [`View`] and a [`RequestState`].
//!
//! The operand stack and the locals live on the native stack in fixed inline arrays (heap only
//! for programs that need more than [`STACK_INLINE`] / [`LOCALS_INLINE`] slots), so a typical
//! section allocates nothing. Every op counts against `Program::step_limit`.

mod certificates;
mod content_safety;
mod identity;
mod jwt;
pub(crate) mod limits;
pub mod liquid;
pub(crate) mod members;
mod outbound;
pub(crate) use outbound::stored_response;
pub(crate) mod statements;
pub(crate) mod token_limit;
mod validation;

use std::time::Duration;

use portcullis_contract::program::{Op, Section, TRY_DEPTH_MAX};
use smallvec::SmallVec;

use crate::policy::builtins;
use crate::policy::error::{EXPRESSION_FAILURE, Fault, PolicyError};
use crate::policy::load::{LoadedConst, LoadedProgram};
use crate::policy::state::{RequestState, Stored, Suspension};
use crate::policy::value::{self, Arith, Handle, IterState, Message, Text, Value};
use crate::policy::view::View;

/// How every expression failure's message starts; `ex.Message` in a `catch` is what follows.
const THROWN_PREFIX: &str = "Expression evaluation failed. ";

/// Stack slots kept inline on the native stack; deeper programs get a heap stack.
pub const STACK_INLINE: usize = 8;
/// Local slots kept inline.
pub const LOCALS_INLINE: usize = 8;
/// Builtin arguments moved off the stack into an inline array (more go to the heap).
pub const ARGS_INLINE: usize = 8;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The section finished: go on to the next.
    Continue,
    /// `return-response`, `mock-response` or a CORS preflight: the response to send is in the
    /// request state (write it with [`crate::policy::apply::write_built_response`]).
    Respond,
    /// `forward-request`: call the backend with these settings, then [`resume`] the section
    /// with the response in the view.
    Forward { timeout_ms: u32, follow_redirects: bool, buffer_response: bool, fail_on_error_status: bool },
    /// A `retry` waits this long before its next attempt; then [`resume`].
    Wait(Duration),
    /// A caching policy asks the proxy to look up, store or remove: do it (for a value lookup,
    /// record the result with [`RequestState::set_cached_variable`]), then [`resume`] (unless a
    /// response lookup hit: then the cached response is the answer). Boxed: rare and large.
    Cache(Box<crate::policy::CacheCall>),
    /// `send-request` / `send-one-way-request`: make the call (for [`CallMode::Now`], wait for
    /// it), record its outcome with [`RequestState::finish_call`], then [`resume`]. Boxed: large.
    ///
    /// [`CallMode::Now`]: crate::policy::CallMode::Now
    Send(Box<crate::policy::SendCall>),
    /// `wait`: collect the deferred calls started since the section began (all, or with `any`
    /// the first to complete; the others are abandoned), record them, then [`resume`].
    WaitCalls { any: bool },
    /// A policy or expression failed: `context.LastError` is recorded in the request state;
    /// run `on-error`, then answer with the error.
    /// Boxed: an error is rare, and every op returns its `Exit` by value.
    Error(Box<PolicyError>),
}

/// The `forward-request` settings of an [`Exit::Forward`], as one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub timeout_ms: u32,
    pub follow_redirects: bool,
    pub buffer_response: bool,
    pub fail_on_error_status: bool,
}

impl Exit {
    /// The forwarding settings, if this is [`Exit::Forward`].
    pub fn forward(&self) -> Option<Forward> {
        match *self {
            Exit::Forward { timeout_ms, follow_redirects, buffer_response, fail_on_error_status } => {
                Some(Forward { timeout_ms, follow_redirects, buffer_response, fail_on_error_status })
            }
            _ => None,
        }
    }
}

/// Runs `program` (a program of `section`) from the start.
pub fn run<'a>(section: Section, program: &'a LoadedProgram, view: &View<'a>, state: &mut RequestState) -> Exit {
    state.suspended = None;
    Machine::new(section, program, view, state).execute(0)
}

/// Continues a program that stopped with [`Exit::Forward`] or [`Exit::Wait`].
pub fn resume<'a>(section: Section, program: &'a LoadedProgram, view: &View<'a>, state: &mut RequestState) -> Exit {
    let suspension = match state.suspended.take() {
        Some(suspension) if suspension.section == section && suspension.program == program.index() => suspension,
        _ => {
            let fault = Fault::policy(500, "Internal", "resume without a matching suspended program");
            return fail(state, PolicyError::at(fault, None, section));
        }
    };
    // A call the section waited for failed (without `ignore-error`): the section fails there.
    if let Some((fault, site)) = state.failed_call.take() {
        let site = site.and_then(|site| program.program().sites.get(site as usize));
        return fail(state, PolicyError::at(fault, site, section));
    }
    let mut machine = Machine::new(section, program, view, state);
    for (slot, stored) in machine.locals.slots_mut().iter_mut().zip(&suspension.locals) {
        *slot = stored.to_value(view.programs);
    }
    machine.site = suspension.site;
    machine.execute(suspension.pc as usize)
}

fn fail(state: &mut RequestState, error: PolicyError) -> Exit {
    state.last_error = Some(error.last_error.clone());
    state.guards.clear();
    Exit::Error(Box::new(error))
}

/// Bounded slots, inline up to `N` (no heap allocation for the common program), on the heap
/// beyond. Only slots in use are ever written or dropped.
struct Slots<'a, const N: usize> {
    items: SmallVec<[Value<'a>; N]>,
    capacity: usize,
}

impl<'a, const N: usize> Slots<'a, N> {
    /// Room for `capacity` values; `filled`: all of them present (null), as locals are.
    /// Inlined so the inline array is built in place, not copied out of a return value.
    #[inline(always)]
    fn new(capacity: usize, filled: bool) -> Self {
        let mut items = SmallVec::with_capacity(capacity);
        if filled {
            items.resize(capacity, Value::Null);
        }
        Self { items, capacity }
    }

    fn slots_mut(&mut self) -> &mut [Value<'a>] {
        &mut self.items
    }

    fn slots(&self) -> &[Value<'a>] {
        &self.items
    }

    fn push(&mut self, value: Value<'a>) -> Result<(), Fault> {
        if self.items.len() >= self.capacity {
            return Err(internal("stack overflow"));
        }
        self.items.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value<'a>, Fault> {
        self.items.pop().ok_or_else(|| internal("stack underflow"))
    }

    fn top(&self) -> Result<&Value<'a>, Fault> {
        self.items.last().ok_or_else(|| internal("stack underflow"))
    }

    /// The top `n` values, bottom first (for calls), left in place.
    fn top_n(&mut self, n: usize) -> Result<&mut [Value<'a>], Fault> {
        let start = self.items.len().checked_sub(n).ok_or_else(|| internal("stack underflow"))?;
        Ok(&mut self.items[start..])
    }

    /// Drops the top `n` values.
    fn drop_n(&mut self, n: usize) {
        let start = self.items.len().saturating_sub(n);
        self.items.truncate(start);
    }
}

/// The verifier guarantees the facts these check; a failure means a VM bug, reported as a 500.
fn internal(what: &'static str) -> Fault {
    Fault::policy(500, "Internal", what)
}

/// One run of one program.
pub(crate) struct Machine<'r, 'a> {
    pub(crate) section: Section,
    pub(crate) program: &'a LoadedProgram,
    pub(crate) view: &'r View<'a>,
    pub(crate) state: &'r mut RequestState,
    stack: Slots<'a, STACK_INLINE>,
    locals: Slots<'a, LOCALS_INLINE>,
    pub(crate) site: Option<u32>,
    steps: u32,
    /// The op being run (a limit notes where its deferred condition starts).
    pc: u32,
    /// The `try`s entered and not left: (handler op, stack depth at the `try`), innermost last.
    handlers: SmallVec<[(u32, usize); 2]>,
}

/// What an op asks of the loop.
pub(crate) enum Flow {
    Next,
    Jump(u32),
    Exit(Exit),
    /// Suspend (saving the locals), resume at the op index (`None`: the next op), and exit.
    Suspend(Option<u32>, Exit),
}

impl<'r, 'a> Machine<'r, 'a> {
    #[inline(always)]
    fn new(section: Section, program: &'a LoadedProgram, view: &'r View<'a>, state: &'r mut RequestState) -> Self {
        let code = program.program();
        Self {
            section,
            program,
            view,
            state,
            stack: Slots::new(usize::from(code.max_stack), false),
            locals: Slots::new(usize::from(code.locals), true),
            site: None,
            steps: 0,
            pc: 0,
            handlers: SmallVec::new(),
        }
    }

    fn execute(&mut self, mut pc: usize) -> Exit {
        let code = self.program.program();
        let limit = code.step_limit;
        loop {
            let Some(op) = code.ops.get(pc) else {
                self.state.guards.clear();
                return Exit::Continue;
            };
            // A statement boundary only names the statement that follows (for errors and
            // traces): a third of a typical section's ops, so it skips the dispatch below.
            if let Op::Site(site) = *op {
                self.site = Some(site);
                pc += 1;
                continue;
            }
            self.steps += 1;
            self.pc = pc as u32;
            let over_limit = self.steps > limit;
            let flow = if over_limit {
                Err(Fault::eval(format!(
                    "Expression evaluation failed. The section exceeded its limit of {limit} steps."
                )))
            } else {
                self.step(*op)
            };
            // A failing expression inside a `try` goes to its handler (the step limit does not:
            // it bounds the whole run).
            let flow = match flow {
                Err(fault) if !over_limit && fault.reason == EXPRESSION_FAILURE && !self.handlers.is_empty() => {
                    self.catch(&fault)
                }
                other => other,
            };
            match flow {
                Ok(Flow::Next) => pc += 1,
                Ok(Flow::Jump(target)) => pc = target as usize,
                Ok(Flow::Exit(exit)) => {
                    self.state.guards.clear();
                    return exit;
                }
                Ok(Flow::Suspend(resume_at, exit)) => {
                    let resume_at = resume_at.unwrap_or(pc as u32 + 1);
                    return self.suspend(resume_at, exit);
                }
                Err(fault) => {
                    let site = self.site.and_then(|site| code.sites.get(site as usize));
                    let error = PolicyError::at(fault, site, self.section);
                    return fail(self.state, error);
                }
            }
        }
    }

    /// Unwinds to the innermost `try`'s handler with the exception's message on its stack.
    fn catch(&mut self, fault: &Fault) -> Result<Flow, Fault> {
        let Some((handler, depth)) = self.handlers.pop() else { return Err(internal("no try to catch in")) };
        self.stack.drop_n(self.stack.slots().len().saturating_sub(depth));
        let message = fault.message.strip_prefix(THROWN_PREFIX).unwrap_or(&fault.message);
        self.stack.push(Value::string(message.to_owned()))?;
        Ok(Flow::Jump(handler))
    }

    fn suspend(&mut self, pc: u32, exit: Exit) -> Exit {
        let program = self.program;
        let regex_origin = |regex: &regex::Regex| regex_origin(program, regex);
        let locals: Result<Vec<Stored>, Fault> =
            self.locals.slots().iter().map(|value| Stored::keep(value, regex_origin)).collect();
        match locals {
            Ok(locals) => {
                self.state.suspended =
                    Some(Suspension { section: self.section, program: program.index(), pc, site: self.site, locals });
                exit
            }
            Err(fault) => {
                let site = self.site.and_then(|site| program.program().sites.get(site as usize));
                fail(self.state, PolicyError::at(fault, site, self.section))
            }
        }
    }

    pub(crate) fn pop(&mut self) -> Result<Value<'a>, Fault> {
        self.stack.pop()
    }

    fn push(&mut self, value: Value<'a>) -> Result<Flow, Fault> {
        self.stack.push(value)?;
        Ok(Flow::Next)
    }

    fn step(&mut self, op: Op) -> Result<Flow, Fault> {
        match op {
            Op::Const(index) => {
                let value = self.constant(index)?;
                self.push(value)
            }
            Op::Null => self.push(Value::Null),
            Op::Bool(value) => self.push(Value::Bool(value)),
            Op::Int(value) => self.push(Value::Int(i64::from(value))),
            Op::Pop => self.pop().map(|_| Flow::Next),
            Op::Dup => {
                let top = self.stack.top()?.clone();
                self.push(top)
            }
            Op::LoadLocal(local) => {
                let value = self.locals.slots().get(usize::from(local)).cloned().ok_or_else(|| internal("local"))?;
                self.push(value)
            }
            Op::StoreLocal(local) => {
                let value = self.pop()?;
                *self.locals.slots_mut().get_mut(usize::from(local)).ok_or_else(|| internal("local"))? = value;
                Ok(Flow::Next)
            }
            Op::Context => self.push(Value::Handle(Handle::Context)),
            Op::Jump(target) => Ok(Flow::Jump(target)),
            Op::JumpIfFalse(target) => Ok(if self.pop()?.truth()? { Flow::Next } else { Flow::Jump(target) }),
            Op::JumpIfTrue(target) => Ok(if self.pop()?.truth()? { Flow::Jump(target) } else { Flow::Next }),
            Op::JumpIfNull(target) => Ok(if self.stack.top()?.is_null() { Flow::Jump(target) } else { Flow::Next }),
            Op::JumpIfNotNull(target) => Ok(if self.stack.top()?.is_null() { Flow::Next } else { Flow::Jump(target) }),
            Op::Add => self.binary(|a, b| value::arith(Arith::Add, a, b)),
            Op::Sub => self.binary(|a, b| value::arith(Arith::Sub, a, b)),
            Op::Mul => self.binary(|a, b| value::arith(Arith::Mul, a, b)),
            Op::Div => self.binary(|a, b| value::arith(Arith::Div, a, b)),
            Op::Rem => self.binary(|a, b| value::arith(Arith::Rem, a, b)),
            Op::Neg => {
                let value = self.pop()?;
                self.push(value::negate(value)?)
            }
            Op::Not => {
                let value = self.pop()?.truth()?;
                self.push(Value::Bool(!value))
            }
            Op::Eq => self.binary(|a, b| Ok(Value::Bool(a.equals(&b)))),
            Op::Ne => self.binary(|a, b| Ok(Value::Bool(!a.equals(&b)))),
            Op::Lt => self.binary(|a, b| Ok(Value::Bool(a.compare(&b)?.is_lt()))),
            Op::Le => self.binary(|a, b| Ok(Value::Bool(a.compare(&b)?.is_le()))),
            Op::Gt => self.binary(|a, b| Ok(Value::Bool(a.compare(&b)?.is_gt()))),
            Op::Ge => self.binary(|a, b| Ok(Value::Bool(a.compare(&b)?.is_ge()))),
            Op::Concat(count) => {
                let joined = value::concat(self.stack.top_n(usize::from(count))?);
                self.stack.drop_n(usize::from(count));
                self.push(joined)
            }
            Op::Cast(ty) => {
                let value = self.pop()?.cast(ty)?;
                self.push(value)
            }
            Op::As(ty) => {
                let value = self.pop()?;
                self.push(if value.is_type(ty) { value } else { Value::Null })
            }
            Op::Prop(prop) => {
                let receiver = self.pop()?;
                let value = self.member(receiver, prop)?;
                self.push(value)
            }
            Op::Index => {
                let key = self.pop()?;
                let receiver = self.pop()?;
                let value = self.index(receiver, key)?;
                self.push(value)
            }
            Op::Call(builtin, argc) => {
                let argc = usize::from(argc);
                let result = if argc <= ARGS_INLINE {
                    let mut args: [Value<'a>; ARGS_INLINE] = std::array::from_fn(|_| Value::Null);
                    for (arg, slot) in args.iter_mut().zip(self.stack.top_n(argc)?.iter_mut()) {
                        *arg = std::mem::take(slot);
                    }
                    self.stack.drop_n(argc);
                    builtins::call(self, builtin, &mut args[..argc])
                } else {
                    let mut args: Vec<Value<'a>> = self.stack.top_n(argc)?.iter_mut().map(std::mem::take).collect();
                    self.stack.drop_n(argc);
                    builtins::call(self, builtin, &mut args)
                };
                self.push(result?)
            }
            Op::RequestHeader { name, default } => {
                let name = self.program.const_str(name).ok_or_else(|| internal("header name"))?.as_str();
                let value = match self.header_value(Message::Request, name) {
                    Some(value) => Value::Str(value),
                    None => match default {
                        Some(index) => self.constant(index)?,
                        None => Value::Null,
                    },
                };
                self.push(value)
            }
            Op::MakeArray(count) => {
                let items = self.stack.top_n(usize::from(count))?.iter_mut().map(std::mem::take).collect();
                self.stack.drop_n(usize::from(count));
                self.push(Value::array(items))
            }
            Op::IterInit(local) => {
                let source = self.pop()?;
                let items = self.elements(source)?;
                let iter = Value::Iter(std::rc::Rc::new(IterState { items, next: std::cell::Cell::new(0) }));
                *self.locals.slots_mut().get_mut(usize::from(local)).ok_or_else(|| internal("local"))? = iter;
                Ok(Flow::Next)
            }
            Op::IterNext(local, target) => {
                let next = match self.locals.slots().get(usize::from(local)) {
                    Some(Value::Iter(iter)) => {
                        let at = iter.next.get();
                        iter.next.set(at + 1);
                        iter.items.get(at).cloned()
                    }
                    _ => return Err(internal("IterNext on a local that holds no iterator")),
                };
                match next {
                    Some(value) => self.push(value),
                    None => Ok(Flow::Jump(target)),
                }
            }
            Op::TryEnter { handler } => {
                if self.handlers.len() >= TRY_DEPTH_MAX {
                    return Err(internal("try statements nest too deeply"));
                }
                self.handlers.push((handler, self.stack.slots().len()));
                Ok(Flow::Next)
            }
            Op::TryExit => {
                self.handlers.pop().ok_or_else(|| internal("TryExit without a try"))?;
                Ok(Flow::Next)
            }
            Op::Throw => {
                let message = match self.pop()? {
                    Value::Null => "Exception of type 'System.Exception' was thrown.".to_owned(),
                    value => value.to_text()?.as_str().to_owned(),
                };
                Err(Fault::eval(format!("{THROWN_PREFIX}{message}")))
            }
            Op::Site(site) => {
                // Handled by the loop in `execute`; kept so every op has one meaning here.
                self.site = Some(site);
                Ok(Flow::Next)
            }
            other => self.statement(other),
        }
    }

    fn constant(&self, index: u32) -> Result<Value<'a>, Fault> {
        Ok(match self.program.consts().get(index as usize) {
            Some(LoadedConst::Str(text)) => Value::Str(Text::Const(text)),
            Some(LoadedConst::Int(value)) => Value::Int(*value),
            Some(LoadedConst::Double(value)) => Value::Double(*value),
            Some(LoadedConst::Regex(regex)) => Value::Regex(regex),
            // The verifier lets only `SetBodyLiquid` name a template.
            Some(LoadedConst::Liquid(_)) | None => return Err(internal("constant out of range")),
        })
    }

    fn binary(&mut self, op: impl FnOnce(Value<'a>, Value<'a>) -> Result<Value<'a>, Fault>) -> Result<Flow, Fault> {
        let b = self.pop()?;
        let a = self.pop()?;
        let result = op(a, b)?;
        self.push(result)
    }
}

/// Where a compiled regex of `program` came from, to store it by reference.
fn regex_origin(program: &LoadedProgram, regex: &regex::Regex) -> Option<crate::policy::load::LitRef> {
    program.consts().iter().enumerate().find_map(|(index, constant)| match constant {
        LoadedConst::Regex(candidate) if std::ptr::eq(candidate, regex) => {
            Some(crate::policy::load::LitRef { program: program.index(), index: index as u32 })
        }
        _ => None,
    })
}
