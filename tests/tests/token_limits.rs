//! `llm-token-limit` and `azure-openai-token-limit` against a fake OpenAI-compatible chat server
//! on loopback: requests pass until the key's tokens per minute are spent (by each response's
//! `usage`, a JSON body or the last event of a stream), then 429 with `Retry-After`; a spent
//! token quota answers 403; an estimated prompt that does not fit is refused before the backend
//! is called; the remaining and consumed tokens' headers and variables are set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::backend::{Reply, Request, ScriptedBackend};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, http};

/// A completion whose usage is 42 tokens.
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;

/// The events of a streamed completion, its usage (60 tokens) in the last one before `[DONE]`.
fn stream_chunks() -> Vec<Vec<u8>> {
    vec![
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n".to_vec(),
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n".to_vec(),
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":40,\"total_tokens\":60}}\n\n"
            .to_vec(),
        b"data: [DONE]\n\n".to_vec(),
    ]
}

fn write(root: &Path, relative: &str, text: &str) {
    std::fs::create_dir_all(root.join(relative).parent().unwrap()).unwrap();
    std::fs::write(root.join(relative), text).unwrap();
}

/// An API at `/{name}` on the chat server with `statement` inbound and the consumed tokens'
/// variable copied into a response header outbound.
fn api(root: &Path, chat: &ScriptedBackend, name: &str, statement: &str) {
    let toml = format!(
        "name = \"{name}\"\npath = \"{name}\"\nbackend-url = \"http://{}/{name}\"\nsubscription-required = false\n",
        chat.addr
    );
    write(root, &format!("apis/{name}/api.toml"), &toml);
    let policy = format!(
        r#"<policies>
  <inbound><base />{statement}</inbound>
  <backend><base /></backend>
  <outbound><base />
    <set-header name="x-consumed-variable" exists-action="override"><value>@(context.Variables.GetValueOrDefault<int>("consumed", -1).ToString())</value></set-header>
  </outbound>
  <on-error><base />
    <choose>
      <when condition="@(context.Request.Headers.ContainsKey(&quot;X-Show-Retry&quot;))">
        <return-response>
          <set-status code="429" reason="Too Many Requests" />
          <set-header name="x-retry-variable" exists-action="override"><value>@(context.Variables.GetValueOrDefault<int>("retry", -1).ToString())</value></set-header>
          <set-body>@(context.LastError.Reason)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#
    );
    write(root, &format!("apis/{name}/policy.xml"), &policy);
}

fn config(chat: &ScriptedBackend) -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    api(
        root,
        chat,
        "rate",
        r#"<llm-token-limit counter-key="@(context.Request.Headers.GetValueOrDefault(&quot;X-Tenant&quot;, &quot;none&quot;))" tokens-per-minute="100" estimate-prompt-tokens="false" remaining-tokens-header-name="x-remaining" tokens-consumed-header-name="x-consumed" tokens-consumed-variable-name="consumed" retry-after-variable-name="retry" />"#,
    );
    api(
        root,
        chat,
        "quota",
        r#"<azure-openai-token-limit counter-key="quota-tenant" token-quota="50" token-quota-period="Daily" estimate-prompt-tokens="false" remaining-quota-tokens-header-name="x-quota-remaining" retry-after-header-name="x-retry-after" />"#,
    );
    api(
        root,
        chat,
        "estimate",
        r#"<llm-token-limit counter-key="estimate-tenant" tokens-per-minute="20" estimate-prompt-tokens="true" remaining-tokens-header-name="x-remaining" />"#,
    );
    dir
}

fn chat_server() -> ScriptedBackend {
    ScriptedBackend::start(|request: &Request| {
        if request.target.contains("chunked-json") {
            let (first, second) = COMPLETION.split_at(40);
            Reply::new(200).header("Content-Type", "application/json").chunked(vec![first.into(), second.into()])
        } else if request.target.contains("stream") {
            Reply::new(200).header("Content-Type", "text/event-stream").chunked(stream_chunks())
        } else {
            Reply::new(200).header("Content-Type", "application/json").body(COMPLETION)
        }
    })
}

fn post(client: &mut http::Connection<std::net::TcpStream>, path: &str, body: &str) -> http::Response {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.round_trip(request.as_bytes()).unwrap()
}

portcullis_tests::on_both_io_backends!(token_limits_charge_usage_and_refuse_spent_keys);

fn token_limits_charge_usage_and_refuse_spent_keys(io: &str) {
    let chat = chat_server();
    let dir = config(&chat);
    let gateway = Gateway::start(GatewayOptions::new(io).config(dir.path()));
    let mut client = http::Connection::open(gateway.addr).unwrap();
    let tenant = [("X-Tenant", "a")];

    // 100 tokens a minute, 42 a completion: three pass (the third overshoots), the fourth waits.
    for (remaining, consumed) in [("100", "42"), ("58", "42"), ("16", "42")] {
        let response = client.get("/rate/chat/completions", &tenant).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), COMPLETION);
        assert_eq!(response.header("x-remaining"), Some(remaining));
        assert_eq!(response.header("x-consumed"), Some(consumed), "a JSON body's usage is read before the head");
        assert_eq!(response.header("x-consumed-variable"), Some(consumed));
    }
    let refused = client.get("/rate/chat/completions", &tenant).unwrap();
    assert_eq!(refused.status, 429);
    let seconds = refused.header("Retry-After").expect("Retry-After").to_owned();
    assert!(seconds.parse::<u32>().is_ok_and(|s| (1..=120).contains(&s)), "{seconds}");
    assert_eq!(refused.header("x-remaining"), Some("0"));
    assert_eq!(
        refused.json(),
        serde_json::json!({"statusCode": 429, "message": format!("Token limit is exceeded. Try again in {seconds} seconds.")})
    );
    // on-error sees the retry variable and LastError.
    let routed = client.get("/rate/chat/completions", &[("X-Tenant", "a"), ("X-Show-Retry", "1")]).unwrap();
    assert_eq!(routed.text(), "TokenLimitExceeded");
    let retry = routed.header("x-retry-variable").expect("the retry variable").parse::<u32>().unwrap();
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(chat.requests_to("/rate").len(), 3, "the refused requests never reached the backend");

    // Another key, streamed: the stream is relayed as it comes and its last event's usage (60)
    // is charged after it; the head went out before it, so there is no consumed header.
    let tenant = [("X-Tenant", "b")];
    for remaining in ["100", "40"] {
        let response = client.get("/rate/chat/completions?stream", &tenant).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, stream_chunks().concat(), "the stream is relayed unchanged");
        assert_eq!(response.header("x-remaining"), Some(remaining));
        assert_eq!(response.header("x-consumed"), None);
    }
    assert_eq!(client.get("/rate/chat/completions?stream", &tenant).unwrap().status, 429);

    // A JSON body in chunks: read in before the head, so that the consumed header goes with it.
    let response = client.get("/rate/chat/completions?chunked-json", &[("X-Tenant", "c")]).unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, COMPLETION));
    assert_eq!(response.header("x-consumed"), Some("42"));
    assert_eq!(response.header("x-consumed-variable"), Some("42"));

    // A daily quota of 50: two completions (84 tokens), then 403.
    for remaining in ["50", "8"] {
        let response = client.get("/quota/chat/completions", &[]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-quota-remaining"), Some(remaining));
    }
    let refused = client.get("/quota/chat/completions", &[]).unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-quota-remaining"), Some("0"));
    let wait = refused.header("x-retry-after").expect("the policy's retry-after header").to_owned();
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("Token quota is exceeded. Try again in "), "{message}");
    assert!(wait.parse::<u32>().is_ok_and(|s| (1..=86_400).contains(&s)), "{wait}");
    assert_eq!(chat.requests_to("/quota").len(), 2);

    // 20 tokens a minute, estimated: a prompt of about 200 tokens is refused before the backend.
    let long = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "word ".repeat(200));
    let refused = post(&mut client, "/estimate/chat/completions", &long);
    assert_eq!(refused.status, 429);
    assert!(chat.requests_to("/estimate").is_empty(), "refused on the estimate alone");
    // A prompt of 8 tokens fits (12 left), then its usage (42) spends the minute.
    let short = r#"{"messages":[{"role":"user","content":"Hello"}]}"#;
    let response = post(&mut client, "/estimate/chat/completions", short);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-remaining"), Some("12"), "the estimate is charged before forwarding");
    assert_eq!(post(&mut client, "/estimate/chat/completions", short).status, 429);
    assert_eq!(chat.requests_to("/estimate").len(), 1);
}
