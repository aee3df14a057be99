//! The portal's templates and assets, embedded from `management/portal/` (rust-embed), and
//! the one function that renders a page.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::Value;

use super::App;
use super::visitor::Visitor;

/// The embedded files: `templates/*.html` and `assets/*`.
#[derive(rust_embed::Embed)]
#[folder = "portal/"]
struct Files;

/// The compiled templates.
#[derive(Debug)]
pub(super) struct Pages {
    environment: Environment<'static>,
}

impl Pages {
    /// Compiles every embedded template (HTML-escaped by default: their names end in `.html`).
    pub(super) fn new() -> Result<Self, minijinja::Error> {
        let mut environment = Environment::new();
        environment.set_formatter(escape_html);
        for name in Files::iter().filter(|name| name.starts_with("templates/")) {
            let Some(file) = Files::get(&name) else { continue };
            let text = String::from_utf8_lossy(&file.data).into_owned();
            let short = name.trim_start_matches("templates/").to_owned();
            environment.add_template_owned(short, text)?;
        }
        Ok(Self { environment })
    }

    /// Renders `template` with `context`.
    pub(super) fn render(&self, template: &str, context: &Value) -> Result<String, minijinja::Error> {
        self.environment.get_template(template)?.render(context)
    }
}

/// minijinja's HTML escaping without `/` (its default turns every URL into `&#x2f;`): `&`, `<`,
/// `>`, `"` and `'` are what HTML text and quoted attributes need.
fn escape_html(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if state.auto_escape() != minijinja::AutoEscape::None && !value.is_safe() => {
            let mut escaped = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#39;"),
                    c => escaped.push(c),
                }
            }
            out.write_str(&escaped)
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "cannot write"))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Renders `template` for `visitor` with `status`; `context` gets `visitor`, `title` and `site`.
pub(super) fn page(app: &App, visitor: &Visitor, status: StatusCode, template: &str, mut context: Value) -> Response {
    if let Some(object) = context.as_object_mut() {
        object.insert("visitor".to_owned(), visitor.view(app.sessions.signing_key()));
        object.insert("site".to_owned(), serde_json::json!({"title": app.settings.title}));
    }
    let response = match app.pages.render(template, &context) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!("the portal cannot render {template}: {error:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page cannot be shown.").into_response()
        }
    };
    visitor.finish(response, app.settings.secure_cookies())
}

/// `GET /assets/{*file}`: the stylesheet and scripts, the vendored viewer (and its licence
/// files, as text), cached for an hour.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Files::get(&format!("assets/{file}")) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") | Some("json") if file.starts_with("vendor/") => "text/plain; charset=utf-8",
        _ if file.starts_with("vendor/") && !file.contains('.') => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let mut response = content.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
