//! The syntax tree of policy expressions and blocks, and the recursive-descent parser that builds it.
//!
//! The grammar is the C# 7 subset APIM policy files use: expressions with C#'s precedence,
//! lambdas (only as call arguments, where LINQ takes them), object and array creation, and the
//! statements of `@{ ... }` blocks. C# features outside the subset are refused here with a
//! "not supported" message pointing at them, rather than with a bare syntax error.

use super::ExprError;
use super::lexer::{self, Part, Span, Tok, Token};

/// A type as written: `string`, `JObject`, `List<string>`, `string[]`, `int?`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeName {
    /// Dotted name as written (`System.String`).
    pub(crate) name: String,
    pub(crate) args: Vec<TypeName>,
    /// `[]` suffixes.
    pub(crate) array_rank: usize,
    pub(crate) nullable: bool,
    pub(crate) span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Neg,
    Plus,
    Not,
    BitNot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    BitAnd,
    BitOr,
    BitXor,
    /// `<<` and `>>` (two adjacent `<` or `>` tokens: `>>` also closes nested generics).
    Shl,
    Shr,
    Coalesce,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Rem => "%",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::And => "&&",
            Self::Or => "||",
            Self::BitAnd => "&",
            Self::BitOr => "|",
            Self::BitXor => "^",
            Self::Shl => "<<",
            Self::Shr => ">>",
            Self::Coalesce => "??",
        }
    }
}

/// One piece of `$"..."`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InterpolatedPart {
    Text(String),
    Hole { expr: Expr, format: Option<String> },
}

/// An argument: `x`, `name: x`, `out var x`, `out T x`, `out x`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arg {
    pub(crate) name: Option<String>,
    pub(crate) out: Option<OutTarget>,
    pub(crate) value: Expr,
}

/// The target of an `out` argument (its `value` is a placeholder [`ExprKind::Name`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutTarget {
    /// `out var x` / `out T x`: declares a local.
    Declare { name: String, ty: Option<TypeName> },
    /// `out x`: assigns an existing local.
    Assign { name: String },
}

/// `{ a, b }` element of a collection initializer, or `[k] = v` of an object initializer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InitElement {
    /// `x` or `{ a, b }`: a call to `Add` with these arguments.
    Add(Vec<Expr>),
    /// `[key] = value`.
    Set { key: Expr, value: Expr },
    /// `Name = value`: sets a property of the new object.
    Property { name: String, name_span: Span, value: Expr },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Coalesce,
    /// `&=`, `|=`, `^=`.
    BitAnd,
    BitOr,
    BitXor,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Char(char),
    Str(String),
    Interpolated(Vec<InterpolatedPart>),
    /// A simple name: a local, `context`, or the first part of a type or namespace name.
    Name(String),
    /// `target.name` / `target?.name`; `type_args` only when called (`As<JObject>()`).
    Member {
        target: Box<Expr>,
        name: String,
        name_span: Span,
        null_conditional: bool,
        type_args: Vec<TypeName>,
    },
    /// A call; the callee is a [`ExprKind::Member`] or a [`ExprKind::Name`].
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
        null_conditional: bool,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Conditional {
        condition: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    Cast {
        ty: TypeName,
        operand: Box<Expr>,
    },
    As {
        operand: Box<Expr>,
        ty: TypeName,
    },
    /// `x is T`, `x is T name`, `x is null`.
    Is {
        operand: Box<Expr>,
        ty: Option<TypeName>,
        binding: Option<(String, Span)>,
    },
    Lambda {
        params: Vec<(String, Span)>,
        body: Box<Expr>,
    },
    /// `new T(args) { initializer }`.
    New {
        ty: TypeName,
        args: Vec<Arg>,
        init: Option<Vec<InitElement>>,
    },
    /// `new [] { .. }` / `new T[] { .. }`.
    NewArray {
        element: Option<TypeName>,
        items: Vec<Expr>,
    },
    /// `new T[n]`: `n` default elements.
    NewSizedArray {
        element: TypeName,
        size: Box<Expr>,
    },
    /// `new { a = 1, b }`: an anonymous object (members in order, names inferred where omitted).
    NewAnonymous(Vec<(String, Span, Expr)>),
    /// `throw e` as an expression (`x ?? throw new Exception(..)`).
    Throw(Box<Expr>),
    Assign {
        op: AssignOp,
        target: Box<Expr>,
        value: Box<Expr>,
    },
    /// `++x`, `x++`, `--x`, `x--`.
    Step {
        increment: bool,
        prefix: bool,
        target: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    pub(crate) kind: StmtKind,
    pub(crate) span: Span,
}

/// A declared local: `x = init` in `var x = init, y = ...;`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declarator {
    pub(crate) name: String,
    pub(crate) span: Span,
    pub(crate) init: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StmtKind {
    /// `var x = e;` (`ty` is `None`) or `T x = e, y;`.
    Local {
        ty: Option<TypeName>,
        declarators: Vec<Declarator>,
    },
    Expr(Expr),
    If {
        condition: Expr,
        then: Box<Stmt>,
        otherwise: Option<Box<Stmt>>,
    },
    Foreach {
        ty: Option<TypeName>,
        name: String,
        name_span: Span,
        sequence: Expr,
        body: Box<Stmt>,
    },
    For {
        init: Vec<Stmt>,
        condition: Option<Expr>,
        step: Vec<Expr>,
        body: Box<Stmt>,
    },
    While {
        condition: Expr,
        body: Box<Stmt>,
    },
    DoWhile {
        body: Box<Stmt>,
        condition: Expr,
    },
    Return(Option<Expr>),
    Break,
    Continue,
    Block(Vec<Stmt>),
    Empty,
    /// `try { } catch (T name) { } finally { }`.
    Try {
        body: Vec<Stmt>,
        catches: Vec<Catch>,
        finally: Option<Vec<Stmt>>,
    },
    /// `throw e;` (`None`: a rethrow, `throw;`).
    Throw(Option<Expr>),
    /// `switch (subject) { case a: case b: ... default: ... }`.
    Switch {
        subject: Expr,
        sections: Vec<SwitchSection>,
    },
    /// `T name(T1 a, T2 b) { .. }` or `=> expr;`: a local function (inlined at each call).
    LocalFunction(std::rc::Rc<LocalFunction>),
}

/// A local function: its return type (`void` allowed), name, parameters and body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LocalFunction {
    pub(crate) ret: TypeName,
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) params: Vec<(TypeName, String, Span)>,
    /// Statements of a block body, or the `return` of an expression body.
    pub(crate) body: Vec<Stmt>,
}

/// One `catch` clause: its type and variable (both optional) and its statements.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Catch {
    pub(crate) ty: Option<TypeName>,
    pub(crate) name: Option<(String, Span)>,
    pub(crate) body: Vec<Stmt>,
}

/// `case a: case b: statements` of a switch; a `None` label is `default`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SwitchSection {
    pub(crate) labels: Vec<Option<Expr>>,
    pub(crate) body: Vec<Stmt>,
}

/// A whole `@(...)` or `@{...}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Expression(Expr),
    /// The statements and the span of the closing brace (where "not all paths return" points).
    Block(Vec<Stmt>, Span),
}

/// Parses `source`, which starts with `@(` or `@{` (after optional whitespace).
pub(crate) fn parse(source: &str) -> Result<Source, ExprError> {
    let start = source.len() - source.trim_start().len();
    let end = source.trim_end().len();
    let body = source.get(start..end).unwrap_or("");
    let whole = Span::new(start, end);
    let block = if body.starts_with("@(") {
        false
    } else if body.starts_with("@{") {
        true
    } else {
        return Err(ExprError::new(Span::new(start, start + 1), "a policy expression starts with `@(` or `@{`"));
    };
    // The closing `)` or `}` is found by the parser, not by the last character, so text after
    // it and a missing one get their own messages.
    let mut parser = Parser { tokens: lexer::tokenize(source, start + 2, end)?, pos: 0, depth: 0 };
    let parsed = if block {
        let mut statements = Vec::new();
        let close = loop {
            if parser.is_punct("}") {
                break parser.advance().span;
            }
            if parser.at_eof() {
                return Err(ExprError::new(whole, "`@{` block is missing its closing `}`"));
            }
            statements.push(parser.statement()?);
        };
        Source::Block(statements, close)
    } else {
        if parser.is_punct(")") {
            return Err(ExprError::new(whole, "empty expression"));
        }
        let expr = parser.expression()?;
        if parser.at_eof() {
            return Err(ExprError::new(whole, "`@(` expression is missing its closing `)`"));
        }
        parser.expect_punct(")")?;
        Source::Expression(expr)
    };
    if !parser.at_eof() {
        return Err(ExprError::new(
            Span::new(parser.span().start, end),
            "unexpected text after the end of the expression (a policy expression must be the whole value)",
        ));
    }
    Ok(parsed)
}

/// C# keywords that can never be a name in an expression.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "base",
    "break",
    "case",
    "catch",
    "checked",
    "class",
    "const",
    "continue",
    "default",
    "delegate",
    "do",
    "else",
    "enum",
    "event",
    "explicit",
    "extern",
    "false",
    "finally",
    "fixed",
    "for",
    "foreach",
    "goto",
    "if",
    "implicit",
    "in",
    "interface",
    "internal",
    "is",
    "lock",
    "namespace",
    "new",
    "null",
    "operator",
    "out",
    "override",
    "params",
    "private",
    "protected",
    "public",
    "readonly",
    "ref",
    "return",
    "sealed",
    "sizeof",
    "stackalloc",
    "static",
    "struct",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "unchecked",
    "unsafe",
    "using",
    "virtual",
    "void",
    "volatile",
    "while",
];

/// Names of C#'s predefined types (keywords usable as types and in `int.Parse`).
pub(crate) const PREDEFINED_TYPES: &[&str] = &[
    "bool", "byte", "char", "decimal", "double", "float", "int", "long", "object", "sbyte", "short", "string", "uint",
    "ulong", "ushort",
];

/// How deeply syntax may nest, in units of [`LEVEL_COST`] per recursive construct (parentheses,
/// prefix operators, arguments, statements, lambdas, interpolation holes) and 1 per link of a
/// left-to-right chain (`a + b + ...`, `a.b.c`). The parser, the lowering and dropping the tree
/// recurse along both, so this bounds their stack use on hostile input: measured in a debug
/// build, a level costs about 25 KiB and a link about 3.5 KiB, so the budget stays under 1 MiB
/// (test threads have 2 MiB). Real policies nest a handful of levels and chain a few dozen links.
const NESTING_BUDGET: usize = 256;
/// Budget units of one recursive construct (32 levels at most).
const LEVEL_COST: usize = 8;
/// Precedence of relational operators (`<`, `is`, `as`).
const RELATIONAL: u8 = 7;
/// `<<` and `>>`: between relational and additive, as in C#.
const SHIFT: u8 = 8;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting budget used so far, checked against [`NESTING_BUDGET`].
    depth: usize,
}

type PResult<T> = Result<T, ExprError>;

impl Parser {
    // ---- token access

    fn token(&self) -> &Token {
        self.peek_token(0)
    }

    /// The token `n` ahead; past the end, the final [`Tok::Eof`].
    fn peek_token(&self, n: usize) -> &Token {
        static EOF: Token = Token { tok: Tok::Eof, span: Span { start: 0, end: 0 } };
        self.tokens.get(self.pos + n).or_else(|| self.tokens.last()).unwrap_or(&EOF)
    }

    fn span(&self) -> Span {
        self.token().span
    }

    fn previous_span(&self) -> Span {
        self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)).map_or(self.span(), |t| t.span)
    }

    fn at_eof(&self) -> bool {
        self.token().tok == Tok::Eof
    }

    fn advance(&mut self) -> Token {
        let token = self.token().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn is_punct(&self, p: &str) -> bool {
        self.is_punct_at(0, p)
    }

    fn is_punct_at(&self, n: usize, p: &str) -> bool {
        matches!(self.peek_token(n).tok, Tok::Punct(q) if q == p)
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(&self.token().tok, Tok::Ident(w) if w == word)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.is_keyword(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> PResult<Span> {
        if self.is_punct(p) { Ok(self.advance().span) } else { Err(self.unexpected(&format!("`{p}`"))) }
    }

    fn expect_eof(&self) -> PResult<()> {
        if self.at_eof() { Ok(()) } else { Err(self.unexpected("the end of the expression")) }
    }

    fn unexpected(&self, wanted: &str) -> ExprError {
        let token = self.token();
        let found = match &token.tok {
            Tok::Eof => "the end of the expression".to_owned(),
            Tok::Ident(w) => format!("`{w}`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Int(_) | Tok::Double(_) => "a number".to_owned(),
            Tok::Str(_) | Tok::Interpolated(_) => "a string".to_owned(),
            Tok::Char(_) => "a character literal".to_owned(),
        };
        let mut message = format!("expected {wanted}, found {found}");
        message.push_str(self.hint());
        ExprError::new(token.span, message)
    }

    /// Why a document's author may have written what the parser stopped at.
    fn hint(&self) -> &'static str {
        let previous = self.pos.checked_sub(1).and_then(|at| self.tokens.get(at)).map(|token| &token.tok);
        match (&self.token().tok, &self.peek_token(1).tok, &self.peek_token(2).tok) {
            (Tok::Str(_) | Tok::Interpolated(_), _, _)
                if matches!(previous, Some(Tok::Str(_) | Tok::Interpolated(_))) =>
            {
                " (C# does not join adjacent string literals: `\"a\" \"b\"` is an error in APIM too; use `+`, or `\"\"` inside a verbatim string)"
            }
            (Tok::Punct("&"), Tok::Ident(entity), Tok::Punct(";"))
                if matches!(entity.as_str(), "quot" | "amp" | "lt" | "gt" | "apos") =>
            {
                " (an XML entity in the decoded expression: the document escapes it twice, e.g. `&amp;quot;`, which APIM refuses too)"
            }
            _ => "",
        }
    }

    /// A name that is not a reserved keyword.
    fn identifier(&mut self) -> PResult<(String, Span)> {
        match &self.token().tok {
            Tok::Ident(w) if !RESERVED.contains(&w.as_str()) => {
                let w = w.clone();
                Ok((w, self.advance().span))
            }
            _ => Err(self.unexpected("a name")),
        }
    }

    fn ident_at(&self, n: usize) -> Option<&str> {
        match &self.peek_token(n).tok {
            Tok::Ident(w) if !RESERVED.contains(&w.as_str()) => Some(w),
            _ => None,
        }
    }

    // ---- types

    /// A type, or `None` (position unchanged) when the tokens do not form one.
    fn try_type(&mut self) -> Option<TypeName> {
        let save = self.pos;
        let ty = self.type_name();
        if ty.is_none() {
            self.pos = save;
        }
        ty
    }

    fn type_name(&mut self) -> Option<TypeName> {
        let start = self.span();
        let mut name = match &self.token().tok {
            Tok::Ident(w) if !RESERVED.contains(&w.as_str()) || w == "void" => w.clone(),
            _ => return None,
        };
        self.pos += 1;
        while self.is_punct(".") && self.ident_at(1).is_some() {
            self.pos += 1;
            name.push('.');
            name.push_str(&self.advance_ident());
        }
        let mut args = Vec::new();
        if self.is_punct("<") {
            self.pos += 1;
            loop {
                args.push(self.type_name()?);
                if self.eat_punct(",") {
                    continue;
                }
                if self.eat_punct(">") {
                    break;
                }
                return None;
            }
        }
        let mut array_rank = 0;
        while self.is_punct("[") && self.is_punct_at(1, "]") {
            self.pos += 2;
            array_rank += 1;
        }
        // `int?` in a declaration or cast; `x is T ? a : b` is ambiguous in C# too.
        let mut nullable = false;
        if self.is_punct("?") && (self.is_punct_at(1, ")") || self.is_punct_at(1, ">") || self.ident_at(1).is_some()) {
            self.pos += 1;
            nullable = true;
        }
        Some(TypeName { name, args, array_rank, nullable, span: start.to(self.previous_span()) })
    }

    fn advance_ident(&mut self) -> String {
        match self.advance().tok {
            Tok::Ident(w) => w,
            _ => String::new(),
        }
    }

    /// `<T, U>` after a member name, when followed by `(` (a generic method call).
    fn try_type_args(&mut self) -> Option<Vec<TypeName>> {
        if !self.is_punct("<") {
            return None;
        }
        let save = self.pos;
        self.pos += 1;
        let mut args = Vec::new();
        while let Some(ty) = self.type_name() {
            args.push(ty);
            if self.eat_punct(",") {
                continue;
            }
            if self.eat_punct(">") && self.is_punct("(") {
                return Some(args);
            }
            break;
        }
        self.pos = save;
        None
    }

    // ---- expressions

    pub(crate) fn expression(&mut self) -> PResult<Expr> {
        self.nested(0, Self::expression_unnested)
    }

    /// Runs `parse` one level deeper (after `links` links of the enclosing chain).
    fn nested<T>(&mut self, links: usize, parse: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        let cost = LEVEL_COST + links;
        self.check_depth(cost)?;
        self.depth += cost;
        let result = parse(self);
        self.depth -= cost;
        result
    }

    /// Fails when a left-to-right chain of `links` operators or members would nest too deeply.
    fn chain(&self, links: usize) -> PResult<()> {
        self.check_depth(links)
    }

    fn check_depth(&self, more: usize) -> PResult<()> {
        if self.depth + more > NESTING_BUDGET {
            return Err(ExprError::new(
                self.span(),
                "the expression is nested too deeply (parentheses, calls or blocks more than 32 levels deep, or chains of operators or members too long)",
            ));
        }
        Ok(())
    }

    fn expression_unnested(&mut self) -> PResult<Expr> {
        if let Some(lambda) = self.try_lambda()? {
            return Ok(lambda);
        }
        let target = self.conditional()?;
        let op = match self.token().tok {
            Tok::Punct("=") => AssignOp::Set,
            Tok::Punct("+=") => AssignOp::Add,
            Tok::Punct("-=") => AssignOp::Sub,
            Tok::Punct("*=") => AssignOp::Mul,
            Tok::Punct("/=") => AssignOp::Div,
            Tok::Punct("%=") => AssignOp::Rem,
            Tok::Punct("??=") => AssignOp::Coalesce,
            Tok::Punct("&=") => AssignOp::BitAnd,
            Tok::Punct("|=") => AssignOp::BitOr,
            Tok::Punct("^=") => AssignOp::BitXor,
            _ => return Ok(target),
        };
        self.pos += 1;
        let value = self.expression()?;
        let span = target.span.to(value.span);
        Ok(Expr { kind: ExprKind::Assign { op, target: Box::new(target), value: Box::new(value) }, span })
    }

    /// `x => body` or `(x, y) => body`.
    fn try_lambda(&mut self) -> PResult<Option<Expr>> {
        let start = self.span();
        let params = if self.ident_at(0).is_some() && self.is_punct_at(1, "=>") {
            let param = self.identifier()?;
            vec![param]
        } else if self.is_punct("(") && self.lambda_params_ahead() {
            self.pos += 1;
            let mut params = Vec::new();
            while !self.eat_punct(")") {
                // `(string x) => ...`: the type is optional; skip it.
                if self.ident_at(1).is_some() {
                    self.type_name();
                }
                params.push(self.identifier()?);
                if !self.is_punct(")") {
                    self.expect_punct(",")?;
                }
            }
            params
        } else {
            return Ok(None);
        };
        self.expect_punct("=>")?;
        if self.is_punct("{") {
            return Err(ExprError::new(
                self.span(),
                "lambdas with a block body are not supported in policy expressions; use an expression body",
            ));
        }
        let body = self.expression()?;
        let span = start.to(body.span);
        Ok(Some(Expr { kind: ExprKind::Lambda { params, body: Box::new(body) }, span }))
    }

    /// At `(`: is this `( names ) =>`?
    fn lambda_params_ahead(&self) -> bool {
        let mut n = 1;
        loop {
            match &self.peek_token(n).tok {
                Tok::Punct(")") => return self.is_punct_at(n + 1, "=>"),
                Tok::Ident(_) | Tok::Punct(",") => n += 1,
                _ => return false,
            }
        }
    }

    fn conditional(&mut self) -> PResult<Expr> {
        let condition = self.coalesce()?;
        if !self.eat_punct("?") {
            return Ok(condition);
        }
        let then = self.expression()?;
        self.expect_punct(":")?;
        let otherwise = self.expression()?;
        let span = condition.span.to(otherwise.span);
        Ok(Expr {
            kind: ExprKind::Conditional {
                condition: Box::new(condition),
                then: Box::new(then),
                otherwise: Box::new(otherwise),
            },
            span,
        })
    }

    fn coalesce(&mut self) -> PResult<Expr> {
        let lhs = self.binary(1)?;
        if !self.eat_punct("??") {
            return Ok(lhs);
        }
        // Right-associative.
        let rhs = match self.try_lambda()? {
            Some(lambda) => lambda,
            None => self.nested(0, Self::coalesce)?,
        };
        Ok(binary(BinaryOp::Coalesce, lhs, rhs))
    }

    /// Whether the token after the cursor is `p` written right after it (`<<`, `>>`).
    fn adjacent_punct(&self, p: &str) -> bool {
        self.is_punct_at(1, p) && self.peek_token(1).span.start == self.token().span.end
    }

    /// The binary operator at the cursor and its precedence (higher binds tighter, as in C#).
    fn binary_operator(&self) -> Option<(BinaryOp, u8)> {
        let Tok::Punct(p) = self.token().tok else { return None };
        Some(match p {
            "||" => (BinaryOp::Or, 1),
            "&&" => (BinaryOp::And, 2),
            "|" => (BinaryOp::BitOr, 3),
            "^" => (BinaryOp::BitXor, 4),
            "&" => (BinaryOp::BitAnd, 5),
            "==" => (BinaryOp::Eq, 6),
            "!=" => (BinaryOp::Ne, 6),
            "<" if self.adjacent_punct("<") => (BinaryOp::Shl, SHIFT),
            ">" if self.adjacent_punct(">") => (BinaryOp::Shr, SHIFT),
            "<" => (BinaryOp::Lt, RELATIONAL),
            ">" => (BinaryOp::Gt, RELATIONAL),
            "<=" => (BinaryOp::Le, RELATIONAL),
            ">=" => (BinaryOp::Ge, RELATIONAL),
            "+" => (BinaryOp::Add, 9),
            "-" => (BinaryOp::Sub, 9),
            "*" => (BinaryOp::Mul, 10),
            "/" => (BinaryOp::Div, 10),
            "%" => (BinaryOp::Rem, 10),
            _ => return None,
        })
    }

    /// Binary operators binding at least as tightly as `min` (precedence climbing: one frame
    /// per nesting level, not one per precedence level). `is` and `as` are relational.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        let mut links = 0;
        loop {
            links += 1;
            self.chain(links)?;
            if min <= RELATIONAL && self.is_keyword("is") {
                lhs = self.is_test(lhs)?;
                continue;
            }
            if min <= RELATIONAL && self.is_keyword("as") {
                self.pos += 1;
                let ty = self.type_name().ok_or_else(|| self.unexpected("a type"))?;
                let span = lhs.span.to(ty.span);
                lhs = Expr { kind: ExprKind::As { operand: Box::new(lhs), ty }, span };
                continue;
            }
            let Some((op, precedence)) = self.binary_operator().filter(|(_, p)| *p >= min) else { return Ok(lhs) };
            self.pos += if matches!(op, BinaryOp::Shl | BinaryOp::Shr) { 2 } else { 1 };
            let rhs = self.nested(links, |p| p.binary(precedence + 1))?;
            lhs = binary(op, lhs, rhs);
        }
    }

    fn is_test(&mut self, operand: Expr) -> PResult<Expr> {
        self.pos += 1;
        if self.is_keyword("null") {
            let span = operand.span.to(self.advance().span);
            return Ok(Expr { kind: ExprKind::Is { operand: Box::new(operand), ty: None, binding: None }, span });
        }
        let ty = self.type_name().ok_or_else(|| self.unexpected("a type or `null`"))?;
        let mut span = operand.span.to(ty.span);
        let binding = match self.ident_at(0) {
            Some(_) => {
                let (name, name_span) = self.identifier()?;
                span = span.to(name_span);
                Some((name, name_span))
            }
            None => None,
        };
        Ok(Expr { kind: ExprKind::Is { operand: Box::new(operand), ty: Some(ty), binding }, span })
    }

    fn unary(&mut self) -> PResult<Expr> {
        let start = self.span();
        let op = match self.token().tok {
            Tok::Punct("-") => Some(UnaryOp::Neg),
            Tok::Punct("+") => Some(UnaryOp::Plus),
            Tok::Punct("!") => Some(UnaryOp::Not),
            Tok::Punct("~") => Some(UnaryOp::BitNot),
            Tok::Punct("++" | "--") => {
                let increment = self.is_punct("++");
                self.pos += 1;
                let target = self.nested(0, Self::unary)?;
                let span = start.to(target.span);
                return Ok(Expr { kind: ExprKind::Step { increment, prefix: true, target: Box::new(target) }, span });
            }
            Tok::Punct("(") => return self.cast_or_primary(),
            _ => None,
        };
        let Some(op) = op else { return self.postfix() };
        self.pos += 1;
        let operand = self.nested(0, Self::unary)?;
        let span = start.to(operand.span);
        Ok(Expr { kind: ExprKind::Unary { op, operand: Box::new(operand) }, span })
    }

    /// At `(`: a cast `(T)x` or a parenthesized expression. As C# decides: `(T)` is a cast when
    /// `T` is a predefined type, or when the token after `)` can start an operand (not an operator).
    fn cast_or_primary(&mut self) -> PResult<Expr> {
        let save = self.pos;
        let start = self.advance().span;
        if let Some(ty) = self.try_type() {
            if self.is_punct(")") {
                let predefined = PREDEFINED_TYPES.contains(&ty.name.as_str()) || ty.array_rank > 0;
                let next = &self.peek_token(1).tok;
                let operand_follows = match next {
                    Tok::Ident(w) => !matches!(w.as_str(), "is" | "as"),
                    Tok::Int(_) | Tok::Double(_) | Tok::Char(_) | Tok::Str(_) | Tok::Interpolated(_) => true,
                    Tok::Punct(p) => {
                        matches!(*p, "(" | "!" | "~") || (predefined && matches!(*p, "-" | "+" | "++" | "--"))
                    }
                    Tok::Eof => false,
                };
                if operand_follows {
                    self.pos += 1;
                    let operand = self.nested(0, Self::unary)?;
                    let span = start.to(operand.span);
                    return Ok(Expr { kind: ExprKind::Cast { ty, operand: Box::new(operand) }, span });
                }
            }
        }
        self.pos = save;
        self.postfix()
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut expr = self.primary()?;
        let mut links = 0;
        loop {
            links += 1;
            self.chain(links)?;
            let null_conditional = self.is_punct("?.") || (self.is_punct("?") && self.is_punct_at(1, "["));
            if self.is_punct(".") || self.is_punct("?.") {
                self.pos += 1;
                let (name, name_span) = self.member_name()?;
                let type_args = self.try_type_args().unwrap_or_default();
                let span = expr.span.to(self.previous_span());
                expr = Expr {
                    kind: ExprKind::Member { target: Box::new(expr), name, name_span, null_conditional, type_args },
                    span,
                };
            } else if self.is_punct("(") {
                let args = self.nested(links, Self::arguments)?;
                let span = expr.span.to(self.previous_span());
                expr = Expr { kind: ExprKind::Call { callee: Box::new(expr), args }, span };
            } else if self.is_punct("[") || null_conditional {
                if null_conditional {
                    self.pos += 1;
                }
                self.pos += 1;
                let index = self.nested(links, Self::expression)?;
                if self.is_punct(",") {
                    return Err(ExprError::new(self.span(), "multi-dimensional indexers are not supported"));
                }
                self.expect_punct("]")?;
                let span = expr.span.to(self.previous_span());
                expr = Expr {
                    kind: ExprKind::Index { target: Box::new(expr), index: Box::new(index), null_conditional },
                    span,
                };
            } else if self.is_punct("++") || self.is_punct("--") {
                let increment = self.is_punct("++");
                let span = expr.span.to(self.advance().span);
                expr = Expr { kind: ExprKind::Step { increment, prefix: false, target: Box::new(expr) }, span };
            } else {
                return Ok(expr);
            }
        }
    }

    /// A member name after `.`: any identifier, keywords included (`int.Parse`, `x.Equals`).
    fn member_name(&mut self) -> PResult<(String, Span)> {
        match &self.token().tok {
            Tok::Ident(w) => {
                let w = w.clone();
                Ok((w, self.advance().span))
            }
            _ => Err(self.unexpected("a member name")),
        }
    }

    /// At `(`: the argument list through `)`.
    fn arguments(&mut self) -> PResult<Vec<Arg>> {
        self.expect_punct("(")?;
        let mut args = Vec::new();
        while !self.eat_punct(")") {
            args.push(self.argument()?);
            if !self.is_punct(")") {
                self.expect_punct(",")?;
            }
        }
        Ok(args)
    }

    fn argument(&mut self) -> PResult<Arg> {
        let mut name = None;
        if self.ident_at(0).is_some() && self.is_punct_at(1, ":") {
            name = Some(self.identifier()?.0);
            self.pos += 1;
        }
        if self.is_keyword("ref") || self.is_keyword("in") {
            return Err(ExprError::new(
                self.span(),
                "`ref` and `in` arguments are not supported in policy expressions",
            ));
        }
        if self.eat_keyword("out") {
            let start = self.span();
            let (ty, declared) = if self.is_keyword("var") && self.ident_at(1).is_some() {
                self.pos += 1;
                (None, true)
            } else if self.ident_at(1).is_some()
                || (self.ident_at(0).is_some() && !self.is_punct_at(1, ")") && !self.is_punct_at(1, ","))
            {
                let ty = self.type_name().ok_or_else(|| self.unexpected("a type"))?;
                (Some(ty), true)
            } else {
                (None, false)
            };
            let (var, span) = self.identifier()?;
            let out = if declared {
                OutTarget::Declare { name: var.clone(), ty }
            } else {
                OutTarget::Assign { name: var.clone() }
            };
            let value = Expr { kind: ExprKind::Name(var), span: start.to(span) };
            return Ok(Arg { name, out: Some(out), value });
        }
        let value = self.expression()?;
        Ok(Arg { name, out: None, value })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let at = self.pos;
        let token = self.advance();
        let span = token.span;
        let kind = match token.tok {
            Tok::Int(i) => ExprKind::Int(i),
            Tok::Double(d) => ExprKind::Double(d),
            Tok::Char(c) => ExprKind::Char(c),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Interpolated(parts) => ExprKind::Interpolated(interpolation(parts, self.depth)?),
            Tok::Punct("(") => {
                let inner = self.expression()?;
                self.expect_punct(")")?;
                return Ok(Expr { kind: inner.kind, span: span.to(self.previous_span()) });
            }
            Tok::Ident(word) => match word.as_str() {
                "null" => ExprKind::Null,
                "true" => ExprKind::Bool(true),
                "false" => ExprKind::Bool(false),
                "new" => return self.creation(span),
                "typeof" | "default" | "sizeof" | "checked" | "unchecked" | "nameof" | "await" | "stackalloc" => {
                    return Err(ExprError::new(span, format!("`{word}` is not supported in policy expressions")));
                }
                "throw" => {
                    let operand = self.nested(0, Self::coalesce)?;
                    let span = span.to(operand.span);
                    return Ok(Expr { kind: ExprKind::Throw(Box::new(operand)), span });
                }
                "this" | "base" | "delegate" | "switch" => {
                    return Err(ExprError::new(span, format!("`{word}` is not supported in policy expressions")));
                }
                w if RESERVED.contains(&w) => {
                    self.pos = at;
                    return Err(self.unexpected("an expression"));
                }
                _ => ExprKind::Name(word),
            },
            _ => {
                self.pos = at;
                return Err(self.unexpected("an expression"));
            }
        };
        Ok(Expr { kind, span })
    }

    /// After `new`.
    fn creation(&mut self, start: Span) -> PResult<Expr> {
        if self.is_punct("{") {
            return self.anonymous(start);
        }
        if self.is_punct("[") {
            self.expect_punct("[")?;
            self.expect_punct("]")?;
            let items = self.array_items()?;
            return Ok(Expr {
                kind: ExprKind::NewArray { element: None, items },
                span: start.to(self.previous_span()),
            });
        }
        let ty_start = self.span();
        let mut ty = self.type_name().ok_or_else(|| self.unexpected("a type after `new`"))?;
        if ty.array_rank > 0 {
            ty.array_rank -= 1;
            let items = self.array_items()?;
            return Ok(Expr {
                kind: ExprKind::NewArray { element: Some(ty), items },
                span: start.to(self.previous_span()),
            });
        }
        if self.eat_punct("[") {
            let size = self.expression()?;
            self.expect_punct("]")?;
            if self.is_punct("[") || self.is_punct("{") {
                return Err(ExprError::new(self.span(), "jagged and initialized sized arrays are not supported"));
            }
            return Ok(Expr {
                kind: ExprKind::NewSizedArray { element: ty, size: Box::new(size) },
                span: start.to(self.previous_span()),
            });
        }
        let args = if self.is_punct("(") { self.arguments()? } else { Vec::new() };
        let init = if self.is_punct("{") { Some(self.initializer()?) } else { None };
        if init.is_none() && !self.tokens.get(self.pos.saturating_sub(1)).is_some_and(|t| t.tok == Tok::Punct(")")) {
            return Err(ExprError::new(
                ty_start.to(self.previous_span()),
                "expected `(` or `{` after the type in `new`",
            ));
        }
        Ok(Expr { kind: ExprKind::New { ty, args, init }, span: start.to(self.previous_span()) })
    }

    /// `{ a = 1, b, x.c }` after `new`: each member's name is given or, as C# infers it, the
    /// last name of a simple or member expression.
    fn anonymous(&mut self, start: Span) -> PResult<Expr> {
        self.expect_punct("{")?;
        let mut members = Vec::new();
        while !self.eat_punct("}") {
            let member = if self.ident_at(0).is_some() && self.is_punct_at(1, "=") {
                let (name, span) = self.identifier()?;
                self.pos += 1;
                (name, span, self.expression()?)
            } else {
                let value = self.expression()?;
                let name = match &value.kind {
                    ExprKind::Name(name) => name.clone(),
                    ExprKind::Member { name, .. } => name.clone(),
                    _ => {
                        return Err(ExprError::new(
                            value.span,
                            "an anonymous type member needs a name (`name = value`)",
                        ));
                    }
                };
                (name, value.span, value)
            };
            if members.iter().any(|(name, _, _): &(String, Span, Expr)| *name == member.0) {
                return Err(ExprError::new(
                    member.1,
                    format!("the anonymous type has two members named `{}`", member.0),
                ));
            }
            members.push(member);
            if !self.is_punct("}") {
                self.expect_punct(",")?;
            }
        }
        Ok(Expr { kind: ExprKind::NewAnonymous(members), span: start.to(self.previous_span()) })
    }

    /// `{ a, b, }` of an array creation.
    fn array_items(&mut self) -> PResult<Vec<Expr>> {
        self.expect_punct("{")?;
        let mut items = Vec::new();
        while !self.eat_punct("}") {
            items.push(self.expression()?);
            if !self.is_punct("}") {
                self.expect_punct(",")?;
            }
        }
        Ok(items)
    }

    /// `{ x, { k, v }, [k] = v }` after `new T(...)`.
    fn initializer(&mut self) -> PResult<Vec<InitElement>> {
        self.expect_punct("{")?;
        let mut elements = Vec::new();
        while !self.eat_punct("}") {
            if self.is_punct("{") {
                elements.push(InitElement::Add(self.array_items()?));
            } else if self.eat_punct("[") {
                let key = self.expression()?;
                self.expect_punct("]")?;
                self.expect_punct("=")?;
                let value = self.expression()?;
                elements.push(InitElement::Set { key, value });
            } else if self.ident_at(0).is_some() && self.is_punct_at(1, "=") {
                let (name, name_span) = self.identifier()?;
                self.expect_punct("=")?;
                let value = self.expression()?;
                elements.push(InitElement::Property { name, name_span, value });
            } else {
                elements.push(InitElement::Add(vec![self.expression()?]));
            }
            if !self.is_punct("}") {
                self.expect_punct(",")?;
            }
        }
        Ok(elements)
    }

    // ---- statements

    fn statement(&mut self) -> PResult<Stmt> {
        self.nested(0, Self::statement_unnested)
    }

    fn statement_unnested(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let keyword = match &self.token().tok {
            Tok::Ident(w) => w.clone(),
            Tok::Punct("{") => {
                self.pos += 1;
                let mut body = Vec::new();
                while !self.eat_punct("}") {
                    if self.at_eof() {
                        return Err(self.unexpected("`}`"));
                    }
                    body.push(self.statement()?);
                }
                return Ok(Stmt { kind: StmtKind::Block(body), span: start.to(self.previous_span()) });
            }
            Tok::Punct(";") => {
                self.pos += 1;
                return Ok(Stmt { kind: StmtKind::Empty, span: start });
            }
            _ => String::new(),
        };
        let kind = match keyword.as_str() {
            "if" => self.if_statement()?,
            "foreach" => self.foreach_statement()?,
            "for" => self.for_statement()?,
            "while" => {
                self.pos += 1;
                let condition = self.parenthesized()?;
                StmtKind::While { condition, body: Box::new(self.statement()?) }
            }
            "do" => {
                self.pos += 1;
                let body = Box::new(self.statement()?);
                if !self.eat_keyword("while") {
                    return Err(self.unexpected("`while`"));
                }
                let condition = self.parenthesized()?;
                self.expect_punct(";")?;
                StmtKind::DoWhile { body, condition }
            }
            "return" => {
                self.pos += 1;
                let value = if self.is_punct(";") { None } else { Some(self.expression()?) };
                self.expect_punct(";")?;
                StmtKind::Return(value)
            }
            "break" | "continue" => {
                self.pos += 1;
                self.expect_punct(";")?;
                if keyword == "break" { StmtKind::Break } else { StmtKind::Continue }
            }
            "using" if self.is_punct_at(1, "(") => return self.using_statement(),
            "try" => self.try_statement()?,
            "throw" => {
                self.pos += 1;
                let value = if self.is_punct(";") { None } else { Some(self.expression()?) };
                self.expect_punct(";")?;
                StmtKind::Throw(value)
            }
            "switch" => self.switch_statement()?,
            "const" => {
                // `const T x = e;`: a local that is never assigned again (C# checks it; so do we,
                // as any local: it is only ever read).
                self.pos += 1;
                let Some(kind) = self.try_declaration()? else {
                    return Err(self.unexpected("a declaration after `const`"));
                };
                self.expect_punct(";")?;
                kind
            }
            "catch" | "finally" | "case" | "goto" | "lock" | "yield" | "checked" | "unchecked" | "unsafe" | "fixed" => {
                let message = match keyword.as_str() {
                    "catch" | "finally" => format!("`{keyword}` must follow a `try` block"),
                    "case" => "`case` must be inside a `switch`".to_owned(),
                    _ => format!("`{keyword}` statements are not supported in policy expressions"),
                };
                return Err(ExprError::new(start, message));
            }
            _ if self.local_function_ahead() => self.local_function()?,
            _ => match self.try_declaration()? {
                Some(kind) => {
                    self.expect_punct(";")?;
                    kind
                }
                None => {
                    let expr = self.expression()?;
                    self.expect_punct(";")?;
                    StmtKind::Expr(expr)
                }
            },
        };
        Ok(Stmt { kind, span: start.to(self.previous_span()) })
    }

    /// `{ statements }` (the braces are required, as after `try`, `catch` and `finally`).
    fn braced_block(&mut self) -> PResult<Vec<Stmt>> {
        self.expect_punct("{")?;
        let mut body = Vec::new();
        while !self.eat_punct("}") {
            if self.at_eof() {
                return Err(self.unexpected("`}`"));
            }
            body.push(self.statement()?);
        }
        Ok(body)
    }

    fn try_statement(&mut self) -> PResult<StmtKind> {
        self.pos += 1;
        let body = self.braced_block()?;
        let mut catches = Vec::new();
        while self.is_keyword("catch") {
            let at = self.advance().span;
            let (mut ty, mut name) = (None, None);
            if self.eat_punct("(") {
                ty = Some(self.type_name().ok_or_else(|| self.unexpected("an exception type"))?);
                if self.ident_at(0).is_some() {
                    name = Some(self.identifier()?);
                }
                self.expect_punct(")")?;
            }
            if self.is_keyword("when") {
                return Err(ExprError::new(self.span(), "exception filters (`catch ... when`) are not supported"));
            }
            if catches.iter().any(|c: &Catch| c.ty.is_none()) {
                return Err(ExprError::new(at, "a general `catch` must be the last catch clause"));
            }
            catches.push(Catch { ty, name, body: self.braced_block()? });
        }
        let finally = if self.eat_keyword("finally") { Some(self.braced_block()?) } else { None };
        if catches.is_empty() && finally.is_none() {
            return Err(self.unexpected("`catch` or `finally` after the `try` block"));
        }
        Ok(StmtKind::Try { body, catches, finally })
    }

    fn switch_statement(&mut self) -> PResult<StmtKind> {
        self.pos += 1;
        let subject = self.parenthesized()?;
        self.expect_punct("{")?;
        let mut sections: Vec<SwitchSection> = Vec::new();
        while !self.eat_punct("}") {
            let mut labels = Vec::new();
            loop {
                if self.eat_keyword("default") {
                    labels.push(None);
                } else if self.eat_keyword("case") {
                    let value = self.expression()?;
                    if self.is_keyword("when") || self.ident_at(0).is_some() {
                        return Err(ExprError::new(
                            self.span(),
                            "pattern cases (`case T x`, `when`) are not supported; use constant cases",
                        ));
                    }
                    labels.push(Some(value));
                } else {
                    break;
                }
                self.expect_punct(":")?;
            }
            if labels.is_empty() {
                return Err(self.unexpected("`case` or `default`"));
            }
            let mut body = Vec::new();
            while !(self.is_keyword("case") || self.is_keyword("default") || self.is_punct("}")) {
                if self.at_eof() {
                    return Err(self.unexpected("`}`"));
                }
                body.push(self.statement()?);
            }
            sections.push(SwitchSection { labels, body });
        }
        Ok(StmtKind::Switch { subject, sections })
    }

    /// At `T name(`: a local function declaration (a call `name(..)` has no type before it).
    fn local_function_ahead(&mut self) -> bool {
        let save = self.pos;
        let ahead = self.try_type().is_some() && self.ident_at(0).is_some() && self.is_punct_at(1, "(");
        self.pos = save;
        ahead
    }

    fn local_function(&mut self) -> PResult<StmtKind> {
        let ret = self.type_name().ok_or_else(|| self.unexpected("a return type"))?;
        let (name, name_span) = self.identifier()?;
        self.expect_punct("(")?;
        let mut params = Vec::new();
        while !self.eat_punct(")") {
            if ["ref", "out", "in", "params", "this"].iter().any(|k| self.is_keyword(k)) {
                return Err(ExprError::new(self.span(), "local function parameters are plain values here"));
            }
            let ty = self.type_name().ok_or_else(|| self.unexpected("a parameter type"))?;
            let (param, span) = self.identifier()?;
            if self.is_punct("=") {
                return Err(ExprError::new(self.span(), "default parameter values are not supported"));
            }
            params.push((ty, param, span));
            if !self.is_punct(")") {
                self.expect_punct(",")?;
            }
        }
        let body = if self.eat_punct("=>") {
            let start = self.span();
            let value = self.expression()?;
            self.expect_punct(";")?;
            let span = start.to(self.previous_span());
            vec![Stmt { kind: StmtKind::Return(Some(value)), span }]
        } else {
            self.braced_block()?
        };
        Ok(StmtKind::LocalFunction(std::rc::Rc::new(LocalFunction { ret, name, name_span, params, body })))
    }

    fn parenthesized(&mut self) -> PResult<Expr> {
        self.expect_punct("(")?;
        let expr = self.expression()?;
        self.expect_punct(")")?;
        Ok(expr)
    }

    fn if_statement(&mut self) -> PResult<StmtKind> {
        self.pos += 1;
        let condition = self.parenthesized()?;
        let then = Box::new(self.statement()?);
        let otherwise = if self.eat_keyword("else") { Some(Box::new(self.statement()?)) } else { None };
        Ok(StmtKind::If { condition, then, otherwise })
    }

    fn foreach_statement(&mut self) -> PResult<StmtKind> {
        self.pos += 1;
        self.expect_punct("(")?;
        let ty = if self.eat_keyword("var") {
            None
        } else {
            Some(self.type_name().ok_or_else(|| self.unexpected("a type or `var`"))?)
        };
        let (name, name_span) = self.identifier()?;
        if !self.eat_keyword("in") {
            return Err(self.unexpected("`in`"));
        }
        let sequence = self.expression()?;
        self.expect_punct(")")?;
        let body = Box::new(self.statement()?);
        Ok(StmtKind::Foreach { ty, name, name_span, sequence, body })
    }

    fn for_statement(&mut self) -> PResult<StmtKind> {
        self.pos += 1;
        self.expect_punct("(")?;
        let mut init = Vec::new();
        if !self.is_punct(";") {
            let start = self.span();
            match self.try_declaration()? {
                Some(kind) => init.push(Stmt { kind, span: start.to(self.previous_span()) }),
                None => loop {
                    let expr = self.expression()?;
                    let span = expr.span;
                    init.push(Stmt { kind: StmtKind::Expr(expr), span });
                    if !self.eat_punct(",") {
                        break;
                    }
                },
            }
        }
        self.expect_punct(";")?;
        let condition = if self.is_punct(";") { None } else { Some(self.expression()?) };
        self.expect_punct(";")?;
        let mut step = Vec::new();
        while !self.is_punct(")") {
            step.push(self.expression()?);
            if !self.is_punct(")") {
                self.expect_punct(",")?;
            }
        }
        self.expect_punct(")")?;
        let body = Box::new(self.statement()?);
        Ok(StmtKind::For { init, condition, step, body })
    }

    /// `using (var x = e) body` disposes nothing here (no resources in the VM): it is the
    /// declaration followed by the body, in a scope of their own.
    fn using_statement(&mut self) -> PResult<Stmt> {
        let start = self.span();
        self.pos += 1;
        self.expect_punct("(")?;
        let decl_start = self.span();
        let Some(decl) = self.try_declaration()? else {
            return Err(ExprError::new(self.span(), "`using` needs a declaration (`using (var x = ...)`)"));
        };
        let decl = Stmt { kind: decl, span: decl_start.to(self.previous_span()) };
        self.expect_punct(")")?;
        let body = self.statement()?;
        Ok(Stmt { kind: StmtKind::Block(vec![decl, body]), span: start.to(self.previous_span()) })
    }

    /// `var x = e` / `T x = e, y` (without the `;`), or `None` with the position unchanged.
    fn try_declaration(&mut self) -> PResult<Option<StmtKind>> {
        let save = self.pos;
        let ty = if self.is_keyword("var") && self.ident_at(1).is_some() {
            self.pos += 1;
            None
        } else {
            match self.try_type() {
                Some(ty) => Some(ty),
                None => return Ok(None),
            }
        };
        let declares = self.ident_at(0).is_some()
            && (self.is_punct_at(1, "=") || self.is_punct_at(1, ";") || self.is_punct_at(1, ","));
        if !declares {
            self.pos = save;
            return Ok(None);
        }
        let mut declarators = Vec::new();
        loop {
            let (name, span) = self.identifier()?;
            let init = if self.eat_punct("=") { Some(self.expression()?) } else { None };
            declarators.push(Declarator { name, span, init });
            if !self.eat_punct(",") {
                break;
            }
        }
        Ok(Some(StmtKind::Local { ty, declarators }))
    }
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span }
}

/// Parses the holes of an interpolated string.
fn interpolation(parts: Vec<Part>, depth: usize) -> PResult<Vec<InterpolatedPart>> {
    parts
        .into_iter()
        .map(|part| match part {
            Part::Text(text) => Ok(InterpolatedPart::Text(text)),
            Part::Hole { tokens, format, span } => {
                let mut parser = Parser { tokens, pos: 0, depth };
                if parser.at_eof() {
                    return Err(ExprError::new(span, "empty interpolation hole"));
                }
                let expr = parser.expression()?;
                parser.expect_eof()?;
                Ok(InterpolatedPart::Hole { expr, format })
            }
        })
        .collect()
}
