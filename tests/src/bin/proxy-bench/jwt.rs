//! The `jwt` scenarios' tokens: RS256 and ES256 tokens signed with the test fixture keys
//! (`tests/fixtures/jwt`), a few hundred distinct ones that wrk sends in turn, so a gateway sees
//! the same token again (as from a real client population) but not on every request.

use std::sync::OnceLock;

use jsonwebtoken::Algorithm;
use portcullis_tests::jwt::{now_s, private_key, sign};

/// Distinct tokens per algorithm.
pub(crate) const TOKENS_PER_ALGORITHM: usize = 200;
/// The issuer and audience every token has and every gateway checks.
pub(crate) const ISSUER: &str = "https://issuer.bench";
pub(crate) const AUDIENCE: &str = "api://bench";

/// The tokens, alternating RS256 and ES256 (valid for a day).
pub(crate) fn tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let (rsa, ec) = (private_key("rsa-a"), private_key("ec256"));
        let exp = now_s() + 86_400;
        (0..TOKENS_PER_ALGORITHM)
            .flat_map(|index| {
                let claims = serde_json::json!({
                    "sub": format!("client-{index}"), "iss": ISSUER, "aud": AUDIENCE, "exp": exp,
                    "scp": "orders.read orders.write",
                });
                [sign(Algorithm::RS256, &rsa, Some("rsa"), &claims), sign(Algorithm::ES256, &ec, Some("ec"), &claims)]
            })
            .collect()
    })
}

/// wrk Lua: every request to `path` carries the next token (requests formatted once, at `init`).
pub(crate) fn wrk_script(path: &str) -> String {
    let list: Vec<String> = tokens().iter().map(|token| format!("\"{token}\"")).collect();
    format!(
        "tokens = {{ {} }}\nlocal requests = {{}}\nlocal next_request = 0\n\
         init = function(args)\n  for i, token in ipairs(tokens) do\n    \
         requests[i] = wrk.format(\"GET\", \"{path}\", {{ [\"Authorization\"] = \"Bearer \" .. token }})\n  end\nend\n\
         request = function()\n  next_request = next_request % #requests + 1\n  return requests[next_request]\nend\n",
        list.join(", ")
    )
}
