//! `azure-openai-emit-token-metric` and `llm-emit-token-metric` against a fake OpenAI-compatible
//! chat server on loopback: the prompt, completion and total tokens of each response's `usage`
//! (a JSON body, and the final event of a streamed one, relayed as it arrives) appear on the ops
//! listener's `/metrics` with the policy's dimensions.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::backend::{Reply, Request, ScriptedBackend};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, eventually, http};

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;

/// The events of a streamed completion, the usage in the last one before `[DONE]`.
fn stream_chunks() -> Vec<Vec<u8>> {
    vec![
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n".to_vec(),
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n".to_vec(),
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n"
            .to_vec(),
        b"data: [DONE]\n\n".to_vec(),
    ]
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn config(chat: &ScriptedBackend) -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    write(
        root,
        "apis/openai/api.toml",
        &format!(
            "name = \"OpenAI\"\npath = \"openai\"\nbackend-url = \"http://{}\"\nsubscription-required = false\n",
            chat.addr
        ),
    );
    write(
        root,
        "apis/openai/policy.xml",
        r#"<policies>
  <inbound>
    <base />
    <azure-openai-emit-token-metric namespace="openai">
      <dimension name="API ID" />
      <dimension name="Client IP" />
      <dimension name="Deployment" value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Deployment&quot;, &quot;none&quot;))" />
    </azure-openai-emit-token-metric>
    <llm-emit-token-metric namespace="llm"><dimension name="Operation ID" /></llm-emit-token-metric>
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#,
    );
    dir
}

fn chat_server() -> ScriptedBackend {
    ScriptedBackend::start(|request: &Request| {
        if request.target.contains("stream") {
            Reply::new(200).header("Content-Type", "text/event-stream").chunked(stream_chunks())
        } else if request.target.contains("fail") {
            Reply::new(429).header("Content-Type", "application/json").body(r#"{"usage":{"total_tokens":1000}}"#)
        } else {
            Reply::new(200).header("Content-Type", "application/json").body(COMPLETION)
        }
    })
}

/// The value of the series of `family` whose labels include every one of `labels`.
fn value(page: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = page.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let mut found = None;
    for sample in scrape.samples.iter().filter(|sample| sample.metric == family) {
        if labels.iter().all(|(name, value)| sample.labels.get(name) == Some(*value)) {
            let number = match sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => value,
                _ => continue,
            };
            *found.get_or_insert(0.0) += number;
        }
    }
    found
}

portcullis_tests::on_both_io_backends!(token_counts_of_json_and_streamed_completions_reach_the_metrics);

fn token_counts_of_json_and_streamed_completions_reach_the_metrics(io: &str) {
    let chat = chat_server();
    let dir = config(&chat);
    let gateway = Gateway::start(GatewayOptions::new(io).config(dir.path()));
    let mut client = http::Connection::open(gateway.addr).unwrap();
    for _ in 0..2 {
        let response =
            client.get("/openai/deployments/gpt-4o/chat/completions", &[("X-Deployment", "gpt-4o")]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), COMPLETION);
    }
    let response =
        client.get("/openai/deployments/gpt-4o/chat/completions?stream", &[("X-Deployment", "gpt-4o")]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, stream_chunks().concat(), "the stream is relayed unchanged");
    // An error response's usage is not counted.
    assert_eq!(client.get("/openai/fail", &[("X-Deployment", "gpt-4o")]).unwrap().status, 429);

    let labels = [("api_id", "openai"), ("deployment", "gpt-4o"), ("client_ip", "127.0.0.1")];
    let scrape = || http::get(gateway.ops_addr(), "/metrics", &[]).unwrap().text();
    eventually("the token metrics are counted", || {
        value(&scrape(), "openai_total_tokens_total", &labels) == Some(96.0)
    });
    let page = scrape();
    assert_eq!(value(&page, "openai_prompt_tokens_total", &labels), Some(29.0), "{page}");
    assert_eq!(value(&page, "openai_completion_tokens_total", &labels), Some(67.0), "{page}");
    assert_eq!(value(&page, "openai_total_tokens_events_total", &labels), Some(3.0), "{page}");
    assert_eq!(value(&page, "llm_total_tokens_total", &[]), Some(96.0), "{page}");
}
