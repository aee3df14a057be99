//! Prompt token estimates for `estimate-prompt-tokens`: the tokens an OpenAI-compatible request
//! body's prompt counts in its model's vocabulary (tiktoken-rs: `o200k_base` for the gpt-4o, o1,
//! o3, o4 and gpt-4.1+ families and for requests that name no model, as Azure OpenAI's, whose
//! deployment is in the path; `cl100k_base` for gpt-4, gpt-3.5 and the embeddings models).
//!
//! Chat messages count as OpenAI documents it: 3 tokens per message, 1 more per `name`, the
//! tokens of each string field, and 3 that prime the reply. Text parts of multi-part contents
//! count; images and audio do not (an estimate below the truth, which the response's `usage`
//! then charges). `prompt` (completions) and `input` (embeddings, responses) count their
//! strings. The vocabularies load once ([`load_tokenizers`], on the snapshot thread when a
//! snapshot first has an estimating limit); a worker only reads them.

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::Tokenizer;

/// Tokens each chat message costs besides its fields (OpenAI's count for gpt-3.5/4/4o).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a message's `name` costs besides its text.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply in every chat request.
const TOKENS_REPLY_PRIMING: u64 = 3;
/// Bytes per token when the vocabularies are not loaded (never on a worker: the snapshot thread
/// loads them before a snapshot with an estimating limit is published).
const BYTES_PER_TOKEN_FALLBACK: u64 = 4;
/// Text bytes one request has encoded by the vocabulary; the rest of a larger prompt counts at
/// [`BYTES_PER_TOKEN_FALLBACK`]. Bounds the worker time one estimate takes (encoding runs on the
/// worker that holds the request, in line with its other connections); a prompt this large is
/// far past most models' windows anyway.
pub const ENCODED_BYTES_MAX: usize = 64 * 1024;
/// Nesting of `input` arrays looked into (an array of messages, each with parts).
const DEPTH_MAX: usize = 4;

struct Tokenizers {
    o200k: CoreBPE,
    cl100k: CoreBPE,
}

static TOKENIZERS: OnceLock<Option<Tokenizers>> = OnceLock::new();

/// Loads both vocabularies if they are not yet (tens of milliseconds; call off the workers).
pub fn load_tokenizers() {
    TOKENIZERS.get_or_init(|| {
        let loaded =
            tiktoken_rs::o200k_base().and_then(|o200k| Ok(Tokenizers { o200k, cl100k: tiktoken_rs::cl100k_base()? }));
        match loaded {
            Ok(tokenizers) => Some(tokenizers),
            Err(error) => {
                tracing::error!(%error, "the tokenizer vocabularies did not load; prompt estimates count bytes / 4");
                None
            }
        }
    });
}

/// The prompt tokens of a request body, `None` when it is not a JSON object.
pub fn estimate_prompt_tokens(body: &[u8]) -> Option<u64> {
    let Value::Object(request) = serde_json::from_slice::<Value>(body).ok()? else { return None };
    let model = request.get("model").and_then(Value::as_str).unwrap_or("");
    let counter = Counter::for_model(model);
    let mut tokens = 0;
    if let Some(Value::Array(messages)) = request.get("messages") {
        tokens += counter.messages(messages) + TOKENS_REPLY_PRIMING;
    }
    for field in ["prompt", "input"] {
        if let Some(value) = request.get(field) {
            tokens += counter.input(value, 0);
        }
    }
    Some(tokens)
}

/// Counts text in one vocabulary.
struct Counter {
    bpe: Option<&'static CoreBPE>,
    /// Bytes still to encode before counting falls back to bytes per token.
    budget: std::cell::Cell<usize>,
}

impl Counter {
    fn for_model(model: &str) -> Self {
        let budget = std::cell::Cell::new(ENCODED_BYTES_MAX);
        let Some(Some(tokenizers)) = TOKENIZERS.get() else { return Self { bpe: None, budget } };
        let bpe = match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(Tokenizer::Cl100kBase | Tokenizer::P50kBase | Tokenizer::R50kBase | Tokenizer::P50kEdit) => {
                &tokenizers.cl100k
            }
            Some(Tokenizer::Gpt2) => &tokenizers.cl100k,
            Some(Tokenizer::O200kBase) | None => &tokenizers.o200k,
        };
        Self { bpe: Some(bpe), budget }
    }

    fn text(&self, text: &str) -> u64 {
        let budget = self.budget.get();
        match self.bpe {
            Some(bpe) if text.len() <= budget => {
                self.budget.set(budget - text.len());
                bpe.encode_ordinary(text).len() as u64
            }
            _ => (text.len() as u64).div_ceil(BYTES_PER_TOKEN_FALLBACK),
        }
    }

    /// Chat messages: each message's fields and overhead.
    fn messages(&self, messages: &[Value]) -> u64 {
        messages.iter().map(|message| self.message(message)).sum()
    }

    fn message(&self, message: &Value) -> u64 {
        let Value::Object(fields) = message else { return 0 };
        let mut tokens = TOKENS_PER_MESSAGE;
        for (key, value) in fields {
            tokens += match (key.as_str(), value) {
                ("content", content) => self.content(content),
                ("name", Value::String(name)) => self.text(name) + TOKENS_PER_NAME,
                (_, Value::String(text)) => self.text(text),
                _ => 0,
            };
        }
        tokens
    }

    /// A message's content: a string, or parts of which the text ones count.
    fn content(&self, content: &Value) -> u64 {
        match content {
            Value::String(text) => self.text(text),
            Value::Array(parts) => parts
                .iter()
                .map(|part| match part.get("text") {
                    Some(Value::String(text)) => self.text(text),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// `prompt` / `input`: a string, strings, or (responses) messages.
    fn input(&self, value: &Value, depth: usize) -> u64 {
        match value {
            Value::String(text) => self.text(text),
            Value::Array(items) if depth < DEPTH_MAX => items
                .iter()
                .map(|item| match item {
                    Value::Object(_) if item.get("content").is_some() => self.message(item),
                    other => self.input(other, depth + 1),
                })
                .sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_count_as_openai_counts_them() {
        load_tokenizers();
        // "Hello" is one token in both vocabularies; "system"/"user" one each.
        let body = br#"{"messages":[{"role":"system","content":"Hello"},{"role":"user","content":"Hello"}]}"#;
        // 2 × (3 + 1 role + 1 content) + 3.
        assert_eq!(estimate_prompt_tokens(body), Some(13));
        let named = br#"{"model":"gpt-4","messages":[{"role":"user","name":"bob","content":[{"type":"text","text":"Hello"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        // 3 + 1 role + (1 + 1) name + 1 text part + 3.
        assert_eq!(estimate_prompt_tokens(named), Some(10));
    }

    #[test]
    fn prompts_and_inputs_count_their_strings() {
        load_tokenizers();
        assert_eq!(estimate_prompt_tokens(br#"{"model":"text-embedding-ada-002","input":["Hello","Hello"]}"#), Some(2));
        assert_eq!(estimate_prompt_tokens(br#"{"prompt":"Hello"}"#), Some(1));
        let long = format!(r#"{{"input":"{}"}}"#, "word ".repeat(100));
        let tokens = estimate_prompt_tokens(long.as_bytes()).expect("a JSON object");
        assert!((95..=105).contains(&tokens), "{tokens}");
    }

    #[test]
    fn text_past_the_encoding_budget_counts_by_bytes() {
        load_tokenizers();
        // The first string is encoded; the second, past the budget, counts a token per 4 bytes.
        let small = "Hello ".repeat(10);
        let large = "x".repeat(ENCODED_BYTES_MAX + 4);
        let body = format!(r#"{{"input":["{small}","{large}"]}}"#);
        let small_tokens = estimate_prompt_tokens(format!(r#"{{"input":"{small}"}}"#).as_bytes()).expect("object");
        let tokens = estimate_prompt_tokens(body.as_bytes()).expect("object");
        assert_eq!(tokens, small_tokens + (ENCODED_BYTES_MAX as u64 + 4) / 4);
    }

    #[test]
    fn a_body_that_is_not_a_json_object_has_no_estimate() {
        load_tokenizers();
        assert_eq!(estimate_prompt_tokens(b"not json"), None);
        assert_eq!(estimate_prompt_tokens(b"[1,2]"), None);
        assert_eq!(estimate_prompt_tokens(b"{}"), Some(0));
    }
}
