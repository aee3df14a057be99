//! `authentication-managed-identity`: a token for a resource from the gateway's token source
//! (`[managed-identity]` in gateway.toml), set as `Authorization: Bearer ...` on the backend
//! request (inside `send-request`, on the request it sends) or stored in a variable. The data plane's token thread fetches and refreshes the
//! tokens of every (resource, client-id) its programs name ahead of time, so the resource and
//! client id must be known when the policy loads.
//!
//! ```xml
//! <authentication-managed-identity resource="https://cognitiveservices.azure.com"
//!     client-id="{{uami-client-id}}" output-token-variable-name="token" ignore-error="false" />
//! ```

use portcullis_contract::program::{ExistsAction, Op};

use super::policies::no_children;
use super::{Place, SectionCompiler};
use crate::xml::Element;

/// The header the token goes in unless `output-token-variable-name` is given.
const AUTHORIZATION: &str = "Authorization";

/// Compiles the policy into `ManagedIdentityToken`, then `SetHeader` or `SetVariable`, both
/// skipped when the token is null (a failure `ignore-error` let through).
pub(super) fn authentication_managed_identity(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let Some(resource) = fixed(c, element, "resource", true, place) else { return };
    let client_id = match element.attr("client-id") {
        Some(_) => match fixed(c, element, "client-id", false, place) {
            Some(client_id) => Some(client_id),
            None => return,
        },
        None => None,
    };
    let variable = match element.attr("output-token-variable-name") {
        Some(attr) => match c.literal(attr, place) {
            Some(name) if !name.trim().is_empty() => Some(name.trim().to_owned()),
            Some(_) => {
                c.error(place, attr.value_span.clone(), "output-token-variable-name must not be empty");
                return;
            }
            None => return,
        },
        None => None,
    };
    let ignore_error = c.literal_bool(element, "ignore-error", false, place);
    let resource = c.code.str_const(&resource);
    let client_id = client_id.map(|client_id| c.code.str_const(&client_id));
    c.code.emit(Op::ManagedIdentityToken { resource, client_id, bearer: variable.is_none(), ignore_error });
    let skip = c.code.label();
    let end = c.code.label();
    c.code.emit_jump(Op::JumpIfNull(0), skip);
    match variable {
        Some(name) => {
            let name = c.code.str_const(&name);
            c.code.emit(Op::SetVariable { name });
        }
        None => {
            let name = c.code.str_const(AUTHORIZATION);
            // The backend request, or inside `send-request` the request it builds.
            let side = c.side(place);
            c.code.emit(Op::SetHeader { side, action: ExistsAction::Override, name, values: 1 });
        }
    }
    c.code.emit_jump(Op::Jump(0), end);
    c.code.place(skip);
    c.code.emit(Op::Pop);
    c.code.place(end);
}

/// A literal attribute (named values substituted) that must not be empty. An expression is
/// refused: the token is fetched before any request asks for it.
fn fixed(c: &mut SectionCompiler<'_>, element: &Element, name: &str, required: bool, place: &Place) -> Option<String> {
    let Some(attr) = element.attr(name) else {
        if required {
            c.error(place, element.name_span.clone(), format!("<{}> needs {name}=\"...\"", element.name));
        }
        return None;
    };
    if crate::expr::is_expression(&attr.value) {
        c.error(
            place,
            attr.value_span.clone(),
            format!(
                "{name} computed by a policy expression is not supported: the gateway fetches each resource's token \
                 ahead of time, so {name} must be a literal or a named value"
            ),
        );
        return None;
    }
    let text = c.literal(attr, place)?;
    let text = text.trim();
    if text.is_empty() {
        c.error(place, attr.value_span.clone(), format!("{name} must not be empty"));
        return None;
    }
    Some(text.to_owned())
}
