//! OData `$filter` as APIM takes it: `eq`, `ne`, `contains()`, `startswith()`, `endswith()`,
//! joined with `and`, `or`, `not` and parentheses, on `name` and the properties APIM filters.
//!
//! String comparisons ignore ASCII case (APIM's store compares case-insensitively).

use serde_json::Value;

/// Longest `$filter` accepted, in bytes (a filter is a few clauses; this bounds the parser's work).
pub(crate) const FILTER_BYTES_MAX: usize = 2_048;
/// Deepest nesting of parentheses and `not`.
const NESTING_MAX: usize = 16;

/// The fields a filter may name: `name` and these properties (written bare or as `properties/x`).
pub(crate) const FILTER_FIELDS: &[&str] = &[
    "name",
    "displayName",
    "description",
    "path",
    "serviceUrl",
    "state",
    "scope",
    "ownerId",
    "email",
    "firstName",
    "lastName",
    "apiRevision",
    "apiVersion",
    "apiVersionSetId",
    "isCurrent",
    "isOnline",
    "method",
    "urlTemplate",
    "url",
    "title",
    "type",
    "secret",
    "builtIn",
    "externalId",
    "subscriptionRequired",
    "apiId",
    "notes",
    "contentType",
    "actor",
    "action",
];

/// A parsed OData `$filter` (`eq`, `ne`, `contains()`, `startswith()`, `endswith()`, `and`, `or`,
/// `not`); public for its fuzz target.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Eq(String, Value),
    Ne(String, Value),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
}

impl Filter {
    /// Parses `text`; the error says what was expected where.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > FILTER_BYTES_MAX {
            return Err(format!("$filter is longer than {FILTER_BYTES_MAX} bytes"));
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0, depth: 0 };
        let filter = parser.or()?;
        match parser.tokens.get(parser.at) {
            None => Ok(filter),
            Some(token) => Err(format!("unexpected {token:?} in $filter")),
        }
    }

    /// Whether `item` (an envelope, or a flat item such as a revision) passes.
    pub fn accepts(&self, item: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.accepts(item) && b.accepts(item),
            Filter::Or(a, b) => a.accepts(item) || b.accepts(item),
            Filter::Not(a) => !a.accepts(item),
            Filter::Eq(field, value) => equal(field_of(item, field), value),
            Filter::Ne(field, value) => !equal(field_of(item, field), value),
            Filter::Contains(field, text) => text_of(item, field).is_some_and(|t| t.contains(text.as_str())),
            Filter::StartsWith(field, text) => text_of(item, field).is_some_and(|t| t.starts_with(text.as_str())),
            Filter::EndsWith(field, text) => text_of(item, field).is_some_and(|t| t.ends_with(text.as_str())),
        }
    }
}

fn field_of<'a>(item: &'a Value, field: &str) -> &'a Value {
    if field == "name" {
        return &item["name"];
    }
    match item.get("properties") {
        Some(properties) => &properties[field],
        None => &item[field],
    }
}

fn text_of(item: &Value, field: &str) -> Option<String> {
    field_of(item, field).as_str().map(str::to_ascii_lowercase)
}

fn equal(found: &Value, wanted: &Value) -> bool {
    match (found, wanted) {
        (Value::String(found), Value::String(wanted)) => found.eq_ignore_ascii_case(wanted),
        (found, wanted) => found == wanted,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '\'' => {
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => literal.push(c),
                        None => return Err(format!("unterminated string starting at byte {at} of $filter")),
                    }
                }
                tokens.push(Token::Text(literal));
            }
            c if c.is_ascii_alphanumeric() || "_/.-$".contains(c) => {
                let mut word = String::from(c);
                while let Some((_, c)) =
                    chars.peek().copied().filter(|(_, c)| c.is_ascii_alphanumeric() || "_/.-$".contains(*c))
                {
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected {other:?} at byte {at} of $filter")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, wanted: Token) -> Result<(), String> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            other => Err(format!("expected {wanted:?} in $filter, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > NESTING_MAX {
            return Err(format!("$filter nests deeper than {NESTING_MAX}"));
        }
        let term = match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                self.expect(Token::Close)?;
                inner
            }
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("not") => Filter::Not(Box::new(self.term()?)),
            Some(Token::Word(word)) if self.tokens.get(self.at) == Some(&Token::Open) => self.function(&word)?,
            Some(Token::Word(word)) => self.comparison(&word)?,
            other => return Err(format!("expected a condition in $filter, found {other:?}")),
        };
        self.depth -= 1;
        Ok(term)
    }

    fn function(&mut self, name: &str) -> Result<Filter, String> {
        self.expect(Token::Open)?;
        let field = match self.next() {
            Some(Token::Word(word)) => field(&word)?,
            other => return Err(format!("expected a field in {name}(), found {other:?}")),
        };
        self.expect(Token::Comma)?;
        let text = match self.next() {
            Some(Token::Text(text)) => text.to_ascii_lowercase(),
            other => return Err(format!("expected a 'string' in {name}(), found {other:?}")),
        };
        self.expect(Token::Close)?;
        match name.to_ascii_lowercase().as_str() {
            "contains" | "substringof" => Ok(Filter::Contains(field, text)),
            "startswith" => Ok(Filter::StartsWith(field, text)),
            "endswith" => Ok(Filter::EndsWith(field, text)),
            _ => Err(format!("{name}() is not a $filter function (contains, startswith, endswith)")),
        }
    }

    fn comparison(&mut self, word: &str) -> Result<Filter, String> {
        let field = field(word)?;
        let operator = match self.next() {
            Some(Token::Word(operator)) => operator.to_ascii_lowercase(),
            other => return Err(format!("expected eq or ne after {word} in $filter, found {other:?}")),
        };
        let value = match self.next() {
            Some(Token::Text(text)) => Value::String(text),
            Some(Token::Word(word)) => literal(&word)?,
            other => return Err(format!("expected a value after {word} {operator} in $filter, found {other:?}")),
        };
        match operator.as_str() {
            "eq" => Ok(Filter::Eq(field, value)),
            "ne" => Ok(Filter::Ne(field, value)),
            _ => Err(format!("{operator} is not a $filter operator (eq, ne)")),
        }
    }
}

fn field(word: &str) -> Result<String, String> {
    let name = word.strip_prefix("properties/").unwrap_or(word);
    match FILTER_FIELDS.iter().find(|field| field.eq_ignore_ascii_case(name)) {
        Some(field) => Ok((*field).to_owned()),
        None => Err(format!("{word} cannot be filtered on (fields: {})", FILTER_FIELDS.join(", "))),
    }
}

fn literal(word: &str) -> Result<Value, String> {
    match word {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" => Ok(Value::Null),
        number => number.parse::<i64>().map(Value::from).map_err(|_| {
            format!("{word} is not a value: quote strings ('text'), or use true, false, null or a number")
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn item(name: &str, display: &str, state: &str) -> Value {
        json!({"name": name, "properties": {"displayName": display, "state": state, "isCurrent": true}})
    }

    #[test]
    fn filters_select_as_odata_says() {
        let echo = item("echo", "Echo API", "active");
        let orders = item("orders", "Orders", "suspended");
        let cases = [
            ("name eq 'echo'", true, false),
            ("name ne 'echo'", false, true),
            ("properties/displayName eq 'ECHO api'", true, false),
            ("contains(displayName,'der')", false, true),
            ("startswith(properties/displayName, 'ech')", true, false),
            ("endswith(name,'s')", false, true),
            ("state eq 'active' or state eq 'suspended'", true, true),
            ("not (state eq 'active') and startswith(name,'o')", false, true),
            ("isCurrent eq true", true, true),
            ("displayName eq 'It''s'", false, false),
        ];
        for (text, for_echo, for_orders) in cases {
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((filter.accepts(&echo), filter.accepts(&orders)), (for_echo, for_orders), "{text}");
        }
    }

    #[test]
    fn bad_filters_say_why() {
        for bad in [
            "name",
            "name eq",
            "secretKey eq 'x'",
            "name gt 'a'",
            "foo(name,'a')",
            "name eq 'a",
            "(name eq 'a'",
            "name eq x",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
        assert!(Filter::parse(&"(".repeat(100)).is_err());
    }
}
