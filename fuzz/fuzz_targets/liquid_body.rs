//! `set-body template="liquid"` (dataplane/src/policy/vm/liquid.rs) on arbitrary bodies: the
//! body is what clients and backends send, read as JSON, as XML, or as text; templates that walk
//! it (loops, filters, lookups of members that may be missing) render or fail with an error,
//! never panic, and a render's output is valid UTF-8 of bounded size.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::policy::load::LiquidTemplate;
use portcullis_dataplane::policy::vm::liquid::render_body;

/// Templates in APIM's dialect that read `body` every way documents do.
const TEMPLATES: [&str; 4] = [
    "{{ body.a.b[0] | Default: 'x' }}{{ body | Size }}{{ body.items | First }}",
    "{% for x in body %}{{ x }}{% for y in x %}{{ y | Upcase }}{% endfor %}{% endfor %}",
    "{% if body.n > 3 %}{{ body.n | Plus: 1 | Times: 2 }}{% else %}{{ body.n | Append: body.s }}{% endif %}",
    "{{ body | Join: ',' }}{% assign v = body.list %}{{ v | Sort | Reverse | Last }}{{ body.s | Split: ',' | Size }}",
];

fn templates() -> &'static Vec<LiquidTemplate> {
    static PARSED: OnceLock<Vec<LiquidTemplate>> = OnceLock::new();
    PARSED.get_or_init(|| {
        TEMPLATES.iter().map(|source| LiquidTemplate::parse(source).expect("the templates parse")).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for template in templates() {
        for xml in [false, true] {
            if let Ok(text) = render_body(template, data, xml) {
                // Loops over the body are bounded by its size: a few times the input at most.
                assert!(text.len() <= 64 * data.len() + 4096, "{} bytes from {} bytes", text.len(), data.len());
            }
        }
    }
});
