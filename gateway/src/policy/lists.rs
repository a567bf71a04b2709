//! List results (tools/list, prompts/list, resources/list, resources/templates/list) cut down
//! to what the agent may use.
//!
//! Each page is filtered on its own and its `nextCursor` kept, so filtering holds across
//! pagination: a cursor only ever leads to another filtered page. Tools also pass the pin and
//! hidden-text checks here, since tools/list is where their definitions are seen.

use std::time::Instant;

use serde_json::Value;

use super::{
    Class, Policy,
    pins::{self, Pins, Status},
};
use crate::{config::policy::FlaggedAction, mcp::param_headers::Declarations};

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

/// The list methods whose result `message` (a whole JSON-RPC response) has the shape of: a
/// `result` with list members as arrays (every one present). For responses the gateway cannot
/// match to a request it saw (the legacy transport's GET stream, a resumed stream's replay, an
/// upstream answering an id twice), so that a list never skips its filter for want of its
/// request.
pub fn methods_by_shape(message: &[u8]) -> Vec<&'static str> {
    crate::mcp::json::with_parsed(message, |v| {
        let Some(result) = v.get("result") else {
            return Vec::new();
        };
        [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ]
        .into_iter()
        .filter(|m| {
            // In any spelling a client may read as the list (`Tools`, which `filter` removes).
            shape(m).is_some_and(|(member, _, _)| {
                result.entries().any(|(k, entries)| {
                    crate::mcp::json::same_folded(k, member) && entries.is_array()
                })
            })
        })
        .collect()
    })
    .unwrap_or_default()
}

/// Whose listing a list result is, and what to do with it.
#[derive(Clone, Copy, Debug)]
pub struct Listing<'a> {
    pub agent: &'a str,
    pub server: &'a str,
    /// When the request it answers was sent upstream, when known: a listing asked for before
    /// the server said its tools changed does not count as listing them again.
    pub asked: Option<Instant>,
    /// Hide what may not be shown (enforce mode), or only report it.
    pub apply: bool,
}

/// Filters `result` (the `result` member of a `method` response) in place when
/// `listing.apply`, and reports what is (or would be) hidden.
pub fn filter(
    policy: &Policy,
    pins: &Pins,
    listing: &Listing<'_>,
    method: &str,
    result: &mut Value,
) -> Vec<Hidden> {
    let Listing {
        agent,
        server,
        asked,
        apply,
    } = *listing;
    let Some((member, key, use_method)) = shape(method) else {
        return Vec::new();
    };
    let mut hidden = Vec::new();
    // A client in Go or .NET reads `Tools` as `tools`: a list spelled so would reach it
    // unfiltered (and past a token's tool scope). It is no MCP list: it goes whole, in observe
    // mode too.
    if let Some(members) = result.as_object_mut() {
        let other_case: Vec<String> = members
            .keys()
            .filter(|k| *k != member && crate::mcp::json::same_folded(k, member))
            .cloned()
            .collect();
        for k in other_case {
            members.remove(&k);
            hidden.push(Hidden {
                name: String::new(),
                why: format!("a list spelled {k:?} instead of {member:?}"),
            });
        }
    }
    let Some(items) = result.get_mut(member).and_then(Value::as_array_mut) else {
        return hidden;
    };
    let flagged_hides = policy.flagged == FlaggedAction::Hide;
    let outdated = member == "tools" && pins.outdated(server, asked);
    items.retain(|item| {
        let Some(name) = item.get(key).and_then(Value::as_str) else {
            hidden.push(Hidden {
                name: String::new(),
                why: format!("an entry without a string {key:?}"),
            });
            return !apply;
        };
        // Hidden text in any entry's description reaches the model, a prompt's or a
        // resource's as much as a tool's. Resources are often the user's own data (file names,
        // page titles), where zero-width joiners, direction marks and the like are ordinary
        // text: only what no text needs (tag characters, escapes, controls, the variation
        // selectors that encode bytes) hides one.
        let hash = (member == "tools").then(|| pins::definition_hash(item));
        let mut flags = pins::flags(item);
        if member == "tools" || member == "prompts" {
            flags.extend(pins::poisoning(item, name, member == "tools"));
        } else {
            flags.retain(|f| pins::NEVER_TEXT.contains(f));
        }
        if !flags.is_empty() {
            match &hash {
                // An operator who read this definition pinned it in the config: accepted, as
                // far as the pin covers it.
                Some(hash) if pins.configured(server, name) == Some(hash.as_str()) => {
                    tracing::debug!(server, tool = name, flags = %flags.join(", "), "A flagged tool definition is accepted by [[policy.pins]].");
                    flags = pins::unpinned_flags(item);
                    if !flags.is_empty() {
                        tracing::warn!(server, tool = name, flags = %flags.join(", "), "A tool pinned in [[policy.pins]] carries hidden text or orders to the model in members its pin does not cover.");
                    }
                }
                Some(hash) => {
                    tracing::warn!(server, member, entry = name, flags = %flags.join(", "), sha256 = %hash, "A list entry carries hidden text or orders to the model; to accept this definition, pin it in [[policy.pins]].");
                }
                None => {
                    tracing::warn!(server, member, entry = name, flags = %flags.join(", "), "A list entry carries hidden text or orders to the model.");
                }
            }
        }
        if member == "prompts" {
            pins.flag_prompt(server, name, &flags);
        }
        let mut why = (flagged_hides && !flags.is_empty())
            .then(|| format!("its definition contains {}", flags.join(", ")));
        if let Some(hash) = hash {
            // Records nothing: it may show what the server has replaced since.
            if outdated {
                hidden.push(Hidden {
                    name: name.to_owned(),
                    why: "listed before the server said its tools changed (notifications/tools/list_changed); list them again".into(),
                });
                return !apply;
            }
            let status = pins.observe(server, name, &hash);
            if status == Status::TooMany {
                hidden.push(Hidden {
                    name: name.to_owned(),
                    why: format!(
                        "the server lists more than {} tools; no more are pinned",
                        pins::MAX_PINS_PER_SERVER
                    ),
                });
                return !apply;
            }
            pins.flag(server, name, &flags);
            let declarations = Declarations::of(item.get("inputSchema"));
            let invalid = declarations.invalid.clone();
            let underscored = declarations
                .headers
                .iter()
                .find(|d| d.key.contains('_'))
                .map(|d| d.header.clone());
            if pins.declare(server, name, &hash, declarations) {
                if let Some(why) = invalid {
                    tracing::warn!(server, tool = name, %why, "A tool's x-mcp-header declarations are invalid: clients drop the tool, and Mcp-Param headers on calls to it are refused.");
                }
                if let Some(header) = underscored {
                    tracing::warn!(server, tool = name, %header, "A tool declares a header whose name has an underscore, which the gateway refuses in header names: 2026-07-28 calls to it are refused.");
                }
            }
            match status {
                Status::Changed { pinned, new } => {
                    if new {
                        tracing::warn!(server, tool = name, pinned = %pinned, "A tool definition changed since it was pinned; it stays hidden until `agentgate policy pin` accepts it.");
                    }
                    why.get_or_insert_with(|| "its definition changed since it was pinned".into());
                }
                Status::NewlyPinned => {
                    tracing::debug!(server, tool = name, "Pinned a tool definition on first sight.")
                }
                Status::Pinned | Status::TooMany => {}
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
    // One rewrite of the pin file for the whole listing.
    pins.flush();
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmatched_responses_are_recognised_as_lists_by_their_shape() {
        let shape = |t: &str| methods_by_shape(t.as_bytes());
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}]}}"#),
            ["tools/list"]
        );
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[],"nextCursor":"c"}}"#),
            ["resources/templates/list"]
        );
        // Spelled as Go and .NET clients read it too.
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":3,"result":{"Tools":[{"name":"x"}]}}"#),
            ["tools/list"]
        );
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":"a","result":{"prompts":[]}}"#),
            ["prompts/list"]
        );
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":1,"result":{"resources":[]}}"#),
            ["resources/list"]
        );
        // Several members: every one is filtered, not only the first found.
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"resources":[{"uri":"x:y"}]}}"#),
            ["tools/list", "resources/list"]
        );
        // A call's result, a "tools" member that is not a list, an error: not lists.
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#,
        ] {
            assert!(shape(other).is_empty(), "{other}");
        }
    }
}
