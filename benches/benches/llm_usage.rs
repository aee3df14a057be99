//! Micro-benchmark of the token metrics' usage scanner (`portcullis_dataplane::llm`): what reading
//! an OpenAI-compatible response's `usage` adds to relaying it, per KiB of body, for a JSON
//! completion and for a streamed one (event stream, chunked on the wire), fed in 16 KiB reads as
//! the relay feeds it. And the token limits' prompt estimate (`portcullis_dataplane::llm::tokens`):
//! parsing a chat request and counting its messages' tokens with tiktoken-rs (`o200k_base`), per
//! KiB of prompt.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_dataplane::llm::UsageScanner;

/// Bytes per relay read (the relay's `BODY_READ_BYTES`).
const READ_BYTES: usize = 16 * 1024;

/// A chat completion of about `bytes` with its usage at the end.
fn completion(bytes: usize) -> Vec<u8> {
    let content = "lorem ipsum dolor sit amet, \\\"quoted\\\" ".repeat(bytes / 40 + 1);
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":300,"total_tokens":312}}}}"#
    )
    .into_bytes()
}

/// A streamed completion of about `bytes`: one event per few words, each its own chunk.
fn stream(bytes: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    let event =
        b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lorem ipsum \"}}],\"usage\":null}\n\n";
    while wire.len() < bytes {
        wire.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        wire.extend_from_slice(event);
        wire.extend_from_slice(b"\r\n");
    }
    let last = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\ndata: [DONE]\n\n";
    wire.extend_from_slice(format!("{:x}\r\n", last.len()).as_bytes());
    wire.extend_from_slice(last);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    wire
}

fn scan(body: &[u8], chunked: bool, events: bool) -> u64 {
    let mut scanner = UsageScanner::new(chunked, events);
    for read in body.chunks(READ_BYTES) {
        scanner.push(read);
    }
    scanner.finish().map_or(0, |usage| usage.total)
}

fn usage(c: &mut Criterion) {
    let mut group = c.benchmark_group("llm_usage");
    let json = completion(64 * 1024);
    assert_eq!(scan(&json, false, false), 312, "the fixture's usage is found");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("json_64k", |b| b.iter(|| scan(black_box(&json), false, false)));
    let events = stream(64 * 1024);
    assert_eq!(scan(&events, true, true), 12, "the fixture's usage is found");
    group.throughput(Throughput::Bytes(events.len() as u64));
    group.bench_function("event_stream_chunked_64k", |b| b.iter(|| scan(black_box(&events), true, true)));
    group.finish();
}

/// A chat request whose one user message is about `bytes` of English-like text.
fn chat_request(bytes: usize) -> Vec<u8> {
    let content =
        "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. ".repeat(bytes / 86 + 1);
    let content = &content[..bytes];
    format!(r#"{{"messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{content}"}}]}}"#)
        .into_bytes()
}

fn prompt_tokens(c: &mut Criterion) {
    portcullis_dataplane::llm::tokens::load_tokenizers();
    let mut group = c.benchmark_group("prompt_tokens");
    for kib in [1, 16] {
        let request = chat_request(kib * 1024);
        let tokens = portcullis_dataplane::llm::tokens::estimate_prompt_tokens(&request).unwrap_or(0);
        assert!(tokens > 100 * kib as u64, "the fixture counts ({tokens} tokens)");
        group.throughput(Throughput::Bytes(request.len() as u64));
        group.bench_function(format!("chat_{kib}k"), |b| {
            b.iter(|| portcullis_dataplane::llm::tokens::estimate_prompt_tokens(black_box(&request)))
        });
    }
    group.finish();
}

criterion_group!(benches, usage, prompt_tokens);
criterion_main!(benches);
