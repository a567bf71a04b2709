//! List results (tools/list, prompts/list, resources/list, resources/templates/list) cut down
//! to what the agent may use.
//!
//! Each page is filtered on its own and its `nextCursor` kept, so filtering holds across
//! pagination: a cursor only ever leads to another filtered page. Tools also pass the pin and
//! hidden-text checks here, since tools/list is where their definitions are seen.

use serde_json::Value;

use super::{
    Class, Policy,
    pins::{self, Pins, Status},
};
use crate::config::policy::FlaggedAction;

/// An entry left out of a list, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden {
    pub name: String,
    pub why: String,
}

/// The array member of each list result, the member naming each entry, the method that uses
/// an entry, and its class.
fn shape(method: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match method {
        "tools/list" => Some(("tools", "name", "tools/call")),
        "prompts/list" => Some(("prompts", "name", "prompts/get")),
        "resources/list" => Some(("resources", "uri", "resources/read")),
        "resources/templates/list" => Some(("resourceTemplates", "uriTemplate", "resources/read")),
        _ => None,
    }
}

/// Whether `method` is a list method this module filters.
pub fn is_list(method: &str) -> bool {
    shape(method).is_some()
}

/// Filters `result` (the `result` member of a list response) in place when `apply`, and
/// reports what is (or would be) hidden.
pub fn filter(
    policy: &Policy,
    pins: &Pins,
    agent: &str,
    server: &str,
    method: &str,
    result: &mut Value,
    apply: bool,
) -> Vec<Hidden> {
    let Some((member, key, use_method)) = shape(method) else {
        return Vec::new();
    };
    let Some(items) = result.get_mut(member).and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let flagged_hides = policy.flagged == FlaggedAction::Hide;
    let mut hidden = Vec::new();
    items.retain(|item| {
        let Some(name) = item.get(key).and_then(Value::as_str) else {
            hidden.push(Hidden {
                name: String::new(),
                why: format!("an entry without a string {key:?}"),
            });
            return !apply;
        };
        let mut why = None;
        if member == "tools" {
            let flags = pins::flags(item);
            pins.flag(server, name, &flags);
            if !flags.is_empty() {
                tracing::warn!(server, tool = name, flags = %flags.join(", "), "A tool definition carries hidden text.");
                if flagged_hides {
                    why = Some(format!("its definition contains {}", flags.join(", ")));
                }
            }
            match pins.observe(server, name, &pins::definition_hash(item)) {
                Status::Changed { pinned, new } => {
                    if new {
                        tracing::warn!(server, tool = name, pinned = %pinned, "A tool definition changed since it was pinned; it stays hidden until `agentgate policy pin` accepts it.");
                    }
                    why.get_or_insert_with(|| "its definition changed since it was pinned".into());
                }
                Status::NewlyPinned => {
                    tracing::debug!(server, tool = name, "Pinned a tool definition on first sight.")
                }
                Status::Pinned => {}
            }
        }
        let class = match member {
            "tools" => Class::Tool(name),
            "prompts" => Class::Prompt(name),
            _ => Class::Resource(name),
        };
        if why.is_none() && !policy.visible(agent, server, class, use_method) {
            why = Some(format!("no rule lets agent {agent:?} use it"));
        }
        match why {
            Some(why) => {
                hidden.push(Hidden {
                    name: name.to_owned(),
                    why,
                });
                !apply
            }
            None => true,
        }
    });
    hidden
}
