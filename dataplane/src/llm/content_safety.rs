//! `llm-content-safety`'s side of Azure AI Content Safety's REST API (sans-IO): the prompt text of
//! an OpenAI-compatible request, the bodies of `text:analyze` and `text:shieldPrompt`, and the
//! verdict on their answers.

use serde_json::{Value, json};

/// `text:analyze`'s path and API version (the generally available one).
pub const ANALYZE_PATH: &str = "/contentsafety/text:analyze?api-version=2023-10-01";
/// `text:shieldPrompt`'s path and API version.
pub const SHIELD_PATH: &str = "/contentsafety/text:shieldPrompt?api-version=2024-09-01";
/// Nesting of `input` arrays looked into (as for the token estimate).
const DEPTH_MAX: usize = 4;

/// The prompt of a request body: the text of its chat `messages` (string contents and text
/// parts), `prompt` and `input`, one per line; `None` when the body is not a JSON object or has
/// no text.
pub fn prompt_text(body: &[u8]) -> Option<String> {
    let Value::Object(request) = serde_json::from_slice::<Value>(body).ok()? else { return None };
    let mut out = String::new();
    if let Some(Value::Array(messages)) = request.get("messages") {
        for message in messages {
            content(message.get("content"), &mut out);
        }
    }
    for field in ["prompt", "input"] {
        input(request.get(field), &mut out, 0);
    }
    (!out.is_empty()).then_some(out)
}

fn push_line(out: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

fn content(content: Option<&Value>, out: &mut String) {
    match content {
        Some(Value::String(text)) => push_line(out, text),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(Value::String(text)) = part.get("text") {
                    push_line(out, text);
                }
            }
        }
        _ => {}
    }
}

fn input(value: Option<&Value>, out: &mut String, depth: usize) {
    match value {
        Some(Value::String(text)) => push_line(out, text),
        Some(Value::Array(items)) if depth < DEPTH_MAX => {
            for item in items {
                match item.get("content") {
                    Some(found) => content(Some(found), out),
                    None => input(Some(item), out, depth + 1),
                }
            }
        }
        _ => {}
    }
}

/// The body of `text:analyze` for `text`.
pub fn analyze_body(text: &str, categories: &[(String, u8)], blocklists: &[String], eight_levels: bool) -> Vec<u8> {
    let mut body = json!({
        "text": text,
        "outputType": if eight_levels { "EightSeverityLevels" } else { "FourSeverityLevels" },
    });
    if !categories.is_empty() {
        body["categories"] = json!(categories.iter().map(|(name, _)| name).collect::<Vec<_>>());
    }
    if !blocklists.is_empty() {
        body["blocklistNames"] = json!(blocklists);
        body["haltOnBlocklistHit"] = json!(false);
    }
    body.to_string().into_bytes()
}

/// The body of `text:shieldPrompt` for `text`.
pub fn shield_body(text: &str) -> Vec<u8> {
    json!({ "userPrompt": text, "documents": [] }).to_string().into_bytes()
}

/// Why a prompt is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// A category's severity reached its threshold.
    Category { name: String, severity: u64 },
    /// A blocklist matched.
    Blocklist(String),
    /// `text:shieldPrompt` detected an attack in the prompt.
    Attack,
}

/// What an answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Block(Blocked),
    /// Not an answer of the API (no verdict in it).
    Unreadable,
}

/// The verdict of `text:analyze`'s answer.
pub fn analyze_verdict(answer: &[u8], categories: &[(String, u8)]) -> Verdict {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else { return Verdict::Unreadable };
    if let Some(Value::Array(matches)) = answer.get("blocklistsMatch") {
        if let Some(first) = matches.first() {
            let name = first.get("blocklistName").and_then(Value::as_str).unwrap_or("");
            return Verdict::Block(Blocked::Blocklist(name.to_owned()));
        }
    }
    let Some(Value::Array(analysis)) = answer.get("categoriesAnalysis") else { return Verdict::Unreadable };
    for entry in analysis {
        let (Some(name), Some(severity)) =
            (entry.get("category").and_then(Value::as_str), entry.get("severity").and_then(Value::as_u64))
        else {
            continue;
        };
        let threshold = categories.iter().find(|(category, _)| category.eq_ignore_ascii_case(name));
        if let Some((category, threshold)) = threshold {
            if severity >= u64::from(*threshold) {
                return Verdict::Block(Blocked::Category { name: category.clone(), severity });
            }
        }
    }
    Verdict::Pass
}

/// The verdict of `text:shieldPrompt`'s answer.
pub fn shield_verdict(answer: &[u8]) -> Verdict {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else { return Verdict::Unreadable };
    let attack = answer.get("userPromptAnalysis").and_then(|analysis| analysis.get("attackDetected"));
    match attack.and_then(Value::as_bool) {
        Some(true) => Verdict::Block(Blocked::Attack),
        Some(false) => Verdict::Pass,
        None => Verdict::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_text_of_messages_prompt_and_input() {
        let body = br#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        assert_eq!(prompt_text(body).as_deref(), Some("Be kind.\nHi"));
        assert_eq!(prompt_text(br#"{"prompt":"a","input":["b","c"]}"#).as_deref(), Some("a\nb\nc"));
        assert_eq!(prompt_text(br#"{"messages":[]}"#), None);
        assert_eq!(prompt_text(b"not json"), None);
    }

    #[test]
    fn verdicts() {
        let categories = [("Hate".to_owned(), 4), ("Violence".to_owned(), 2)];
        let calm = br#"{"blocklistsMatch":[],"categoriesAnalysis":[{"category":"Hate","severity":2},{"category":"Violence","severity":0}]}"#;
        assert_eq!(analyze_verdict(calm, &categories), Verdict::Pass);
        let hateful = br#"{"categoriesAnalysis":[{"category":"Hate","severity":4}]}"#;
        assert_eq!(
            analyze_verdict(hateful, &categories),
            Verdict::Block(Blocked::Category { name: "Hate".into(), severity: 4 })
        );
        let listed =
            br#"{"blocklistsMatch":[{"blocklistName":"list1","blocklistItemText":"x"}],"categoriesAnalysis":[]}"#;
        assert_eq!(analyze_verdict(listed, &categories), Verdict::Block(Blocked::Blocklist("list1".into())));
        assert_eq!(analyze_verdict(b"{}", &categories), Verdict::Unreadable);
        assert_eq!(
            shield_verdict(br#"{"userPromptAnalysis":{"attackDetected":true}}"#),
            Verdict::Block(Blocked::Attack)
        );
        assert_eq!(shield_verdict(br#"{"userPromptAnalysis":{"attackDetected":false}}"#), Verdict::Pass);
        assert_eq!(shield_verdict(b"[]"), Verdict::Unreadable);
        let body: Value =
            serde_json::from_slice(&analyze_body("t", &categories, &["l".into()], true)).unwrap_or_default();
        assert_eq!(body["categories"], json!(["Hate", "Violence"]));
        assert_eq!(body["outputType"], "EightSeverityLevels");
        assert_eq!(body["blocklistNames"], json!(["l"]));
    }
}
