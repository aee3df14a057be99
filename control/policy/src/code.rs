//! The program under construction: ops, a deduplicated constant pool, local slots and labels.
//!
//! Both the policy-statement compiler and the expression compiler emit through this one
//! builder, so a section's statements and the expressions inside them share one pool and one
//! set of locals. Forward jumps take a [`Label`] that is patched when the label is placed.

use std::collections::HashMap;

use portcullis_contract::program::{
    self, ClientCertificateCheck, Const, Cors, IpFilter, Limit, Op, Program, STEPS_MAX, Site, VerifyError,
};

/// A jump target that may not be placed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Key of a deduplicated constant (f64 by its bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ConstKey {
    Str(String),
    Int(i64),
    Double(u64),
    Regex(String, bool),
    Liquid(String),
}

#[derive(Debug, Default)]
pub struct CodeBuilder {
    ops: Vec<Op>,
    consts: Vec<Const>,
    const_index: HashMap<ConstKey, u32>,
    locals: u16,
    /// Position of each label once placed.
    labels: Vec<Option<u32>>,
    /// (op index, label) of every jump emitted before its label was placed.
    fixups: Vec<(usize, Label)>,
    sites: Vec<Site>,
    ip_filters: Vec<IpFilter>,
    cors: Vec<Cors>,
    client_certificate_checks: Vec<ClientCertificateCheck>,
    limits: Vec<Limit>,
    jwt: Vec<portcullis_contract::jwt::JwtRule>,
    token_limits: Vec<portcullis_contract::program::TokenLimit>,
    content_safety: Vec<portcullis_contract::program::ContentSafety>,
    content_validations: Vec<portcullis_contract::program::ContentValidation>,
}

/// Placeholder target of a jump whose label is not placed yet.
const UNPLACED: u32 = u32::MAX;

impl CodeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `op`; returns its index.
    pub fn emit(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// The statement the last `Site` op emitted opened (the policy being compiled).
    pub fn last_site(&self) -> Option<u32> {
        self.ops.iter().rev().find_map(|op| match op {
            Op::Site(site) => Some(*site),
            _ => None,
        })
    }

    /// Index the next op will have.
    pub fn position(&self) -> usize {
        self.ops.len()
    }

    /// Drops the ops from `position` on, with the jumps among them that wait for a label: what
    /// an expression that failed half-way emitted. The constants, locals and labels it made stay,
    /// unused (the section is discarded anyway; this keeps its stack accounting whole, so that
    /// its remaining statements still verify).
    pub fn truncate(&mut self, position: usize) {
        self.ops.truncate(position);
        self.fixups.retain(|&(at, _)| at < position);
    }

    /// Index of a string constant (deduplicated).
    pub fn str_const(&mut self, value: &str) -> u32 {
        self.constant(Const::Str(value.to_owned()))
    }

    /// Index of a constant (deduplicated).
    pub fn constant(&mut self, value: Const) -> u32 {
        let key = match &value {
            Const::Str(s) => ConstKey::Str(s.clone()),
            Const::Int(i) => ConstKey::Int(*i),
            Const::Double(d) => ConstKey::Double(d.to_bits()),
            Const::Regex { pattern, ignore_case } => ConstKey::Regex(pattern.clone(), *ignore_case),
            Const::Liquid(source) => ConstKey::Liquid(source.clone()),
        };
        if let Some(&index) = self.const_index.get(&key) {
            return index;
        }
        let index = self.consts.len() as u32;
        self.consts.push(value);
        self.const_index.insert(key, index);
        index
    }

    /// Appends `values` as consecutive string constants (not deduplicated, so they form one
    /// run); returns the index of the first.
    pub fn fresh_str_consts(&mut self, values: &[String]) -> u32 {
        let first = self.consts.len() as u32;
        self.consts.extend(values.iter().map(|value| Const::Str(value.clone())));
        first
    }

    /// Pushes a string literal.
    pub fn push_str(&mut self, value: &str) {
        let index = self.str_const(value);
        self.emit(Op::Const(index));
    }

    /// Pushes an integer literal (small ones inline).
    pub fn push_int(&mut self, value: i64) {
        match i32::try_from(value) {
            Ok(small) => self.emit(Op::Int(small)),
            Err(_) => {
                let index = self.constant(Const::Int(value));
                self.emit(Op::Const(index))
            }
        };
    }

    /// A fresh local slot. Slots are not reused: a section rarely needs more than a few dozen,
    /// and [`program::LOCALS_MAX`] is checked by the verifier.
    pub fn local(&mut self) -> u16 {
        let slot = self.locals;
        self.locals = self.locals.saturating_add(1);
        slot
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next op.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.ops.len() as u32);
    }

    /// Emits a jumping op (`Jump`, `JumpIfFalse`, `IterNext`, `RetryNext`, ...) to `label`; the
    /// op's own target is ignored and patched.
    pub fn emit_jump(&mut self, op: Op, label: Label) -> usize {
        let at = self.emit(with_target(op, UNPLACED));
        self.fixups.push((at, label));
        at
    }

    /// Registers a policy site; returns its index for [`Op::Site`].
    pub fn site(&mut self, site: Site) -> u32 {
        self.sites.push(site);
        (self.sites.len() - 1) as u32
    }

    /// How many statements of `policy` the program has so far (the current one included).
    pub fn sites_of(&self, policy: &str) -> usize {
        self.sites.iter().filter(|site| site.policy == policy).count()
    }

    pub fn ip_filter(&mut self, filter: IpFilter) -> u32 {
        self.ip_filters.push(filter);
        (self.ip_filters.len() - 1) as u32
    }

    /// Registers a rate limit or quota; returns its index for [`Op::Limit`].
    pub fn limit(&mut self, limit: Limit) -> u32 {
        self.limits.push(limit);
        (self.limits.len() - 1) as u32
    }

    /// Registers a token limit; returns its index for [`Op::TokenLimit`].
    pub fn token_limit(&mut self, limit: portcullis_contract::program::TokenLimit) -> u32 {
        self.token_limits.push(limit);
        (self.token_limits.len() - 1) as u32
    }

    /// Registers an `llm-content-safety` rule; returns its index for [`Op::ContentSafetyCall`].
    pub fn content_safety(&mut self, rule: portcullis_contract::program::ContentSafety) -> u32 {
        self.content_safety.push(rule);
        (self.content_safety.len() - 1) as u32
    }

    /// Registers a `validate-jwt` rule; returns its index for [`Op::ValidateJwt`].
    pub fn jwt(&mut self, rule: portcullis_contract::jwt::JwtRule) -> u32 {
        self.jwt.push(rule);
        (self.jwt.len() - 1) as u32
    }

    pub fn content_validation(&mut self, rule: portcullis_contract::program::ContentValidation) -> u32 {
        self.content_validations.push(rule);
        (self.content_validations.len() - 1) as u32
    }

    pub fn cors(&mut self, cors: Cors) -> u32 {
        self.cors.push(cors);
        (self.cors.len() - 1) as u32
    }

    pub fn client_certificate_check(&mut self, check: ClientCertificateCheck) -> u32 {
        self.client_certificate_checks.push(check);
        (self.client_certificate_checks.len() - 1) as u32
    }

    /// Patches the jumps, fuses constant operands into their ops (see [`super::fuse`]), computes
    /// the stack bound and verifies the program.
    pub fn finish(mut self) -> Result<Program, VerifyError> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            // A label used but never placed is a compiler bug; the verifier refuses the target.
            let target = self.labels.get(label.0).copied().flatten().unwrap_or(UNPLACED);
            self.ops[at] = with_target(self.ops[at], target);
        }
        let ops = super::fuse::fuse(&self.ops, &self.consts);
        let max_stack = program::stack_depth_max(&ops)?;
        let program = Program {
            ops,
            consts: self.consts,
            locals: self.locals,
            max_stack: u16::try_from(max_stack).unwrap_or(u16::MAX),
            step_limit: STEPS_MAX,
            sites: self.sites,
            ip_filters: self.ip_filters,
            client_certificate_checks: self.client_certificate_checks,
            cors: self.cors,
            limits: self.limits,
            jwt: self.jwt,
            token_limits: self.token_limits,
            content_safety: self.content_safety,
            content_validations: self.content_validations,
        };
        program::verify(&program)?;
        Ok(program)
    }
}

/// `op` with its jump target replaced (ops without a target are returned unchanged).
pub(crate) fn with_target(op: Op, target: u32) -> Op {
    match op {
        Op::Jump(_) => Op::Jump(target),
        Op::JumpIfFalse(_) => Op::JumpIfFalse(target),
        Op::JumpIfTrue(_) => Op::JumpIfTrue(target),
        Op::JumpIfNull(_) => Op::JumpIfNull(target),
        Op::JumpIfNotNull(_) => Op::JumpIfNotNull(target),
        Op::IterNext(local, _) => Op::IterNext(local, target),
        Op::RetryNext { local, count, interval_ms, max_interval_ms, delta_ms, first_fast_retry, .. } => {
            Op::RetryNext { local, count, interval_ms, max_interval_ms, delta_ms, first_fast_retry, target }
        }
        Op::Limit { limit, .. } => Op::Limit { limit, resume: target },
        Op::ContentSafetyCall { rule, shield, .. } => Op::ContentSafetyCall { rule, shield, skip: target },
        Op::TryEnter { .. } => Op::TryEnter { handler: target },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_patch_forward_and_backward_jumps() {
        let mut code = CodeBuilder::new();
        let top = code.label();
        let end = code.label();
        code.place(top);
        code.emit(Op::Bool(false));
        code.emit_jump(Op::JumpIfTrue(0), top);
        code.emit_jump(Op::Jump(0), end);
        code.emit(Op::Null);
        code.emit(Op::Pop);
        code.place(end);
        let program = code.finish().unwrap();
        assert_eq!(program.ops[1], Op::JumpIfTrue(0));
        assert_eq!(program.ops[2], Op::Jump(5));
        assert_eq!(program.max_stack, 1);
    }

    #[test]
    fn constants_are_deduplicated() {
        let mut code = CodeBuilder::new();
        assert_eq!(code.str_const("a"), 0);
        assert_eq!(code.str_const("b"), 1);
        assert_eq!(code.str_const("a"), 0);
        assert_eq!(code.constant(Const::Int(1)), 2);
        assert_eq!(code.constant(Const::Double(1.0)), 3);
    }

    #[test]
    fn an_unplaced_label_is_refused() {
        let mut code = CodeBuilder::new();
        let nowhere = code.label();
        code.emit_jump(Op::Jump(0), nowhere);
        assert!(matches!(code.finish(), Err(VerifyError::JumpOutOfRange { .. })));
    }
}
