//! The resources every APIM service has: the administrator (user `1`) and the three system
//! groups (`administrators`, `developers`, `guests`), the administrator in the first.

use serde_json::{Value, json};

use crate::resource::ResourcePath;
use crate::service::{Authority, Service, WriteError, now, put};
use crate::store::{Actor, Write};

/// The administrator's email until someone changes it.
pub const ADMIN_EMAIL: &str = "admin@portcullis.invalid";

/// Creates the built-in user and groups that are absent (all of them on a new store; none when
/// they exist, so it runs at every start). Call it after [`Service::open`], before serving the
/// management API. Returns whether it wrote anything.
pub fn seed_builtins(service: &mut Service) -> Result<bool, WriteError> {
    let writes: Vec<Write> = builtins()
        .into_iter()
        .filter(|(path, _)| service.state().get(path).is_none())
        .filter_map(|(path, properties)| Some(put(ResourcePath::parse(path).ok()?, properties)))
        .collect();
    if writes.is_empty() {
        return Ok(false);
    }
    let actor = Actor { name: "portcullis".to_owned(), action: "seed the built-in user and groups".to_owned() };
    service.write(writes, &[], Authority::Store, &actor)?;
    Ok(true)
}

fn builtins() -> Vec<(&'static str, Value)> {
    let group = |name: &str, description: &str| json!({"displayName": name, "description": description, "builtIn": true, "type": "system"});
    vec![
        (
            "/users/1",
            json!({"email": ADMIN_EMAIL, "firstName": "Administrator", "lastName": "", "state": "active",
                   "registrationDate": now()}),
        ),
        (
            "/groups/administrators",
            group(
                "Administrators",
                "Administrators is a built-in group: its members are the service's administrators.",
            ),
        ),
        ("/groups/developers", group("Developers", "Developers is a built-in group: every signed-up user is in it.")),
        ("/groups/guests", group("Guests", "Guests is a built-in group: visitors who have not signed in.")),
        ("/groups/administrators/users/1", json!({})),
    ]
}
