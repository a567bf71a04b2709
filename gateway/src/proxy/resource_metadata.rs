//! OAuth 2.0 Protected Resource Metadata (RFC 9728): where an MCP client that gets a 401 finds
//! the authorization servers whose tokens the gateway accepts.
//!
//! Published only when `tokens.resource` says what the gateway's URL is: the document names
//! that URL as the resource, so a client asks its authorization server for tokens bound to it
//! (RFC 8707), and a URL guessed from a request's `Host` would let each caller pick its own.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::{Body, refusal};
use crate::config::tokens::TokensConfig;

/// The well-known path the metadata lives under (RFC 9728 3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The published document and where clients are told to fetch it.
#[derive(Debug)]
pub struct ResourceMetadata {
    document: Bytes,
    /// The metadata URL for the resource, as `WWW-Authenticate: Bearer resource_metadata=` names
    /// it.
    url: String,
    /// The path under [`WELL_KNOWN`] for the resource itself (empty when it is the origin).
    own: String,
}

impl ResourceMetadata {
    /// The metadata `tokens` describes, when `tokens.resource` is set.
    pub fn new(tokens: &TokensConfig) -> Option<Self> {
        let resource = tokens.resource.as_ref()?;
        let servers: Vec<&str> = tokens.authorization_servers().collect();
        let document = serde_json::json!({
            "resource": resource.as_str(),
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "agentgate",
        });
        // RFC 9728 3.1: the well-known path goes between the host and the resource's path, its
        // terminating slash removed.
        let own = resource.path().trim_end_matches('/').to_owned();
        let origin = resource.origin().ascii_serialization();
        Some(Self {
            document: Bytes::from(document.to_string()),
            url: format!("{origin}{WELL_KNOWN}{own}"),
            own,
        })
    }

    /// Whether `path` asks for this metadata: only at the resource's own well-known URL, since
    /// a document found at another must name the URL it was found for (RFC 9728 3.3), and the
    /// resource is the gateway as a whole (one audience for its tokens). Clients look there
    /// first: every challenge points to it.
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(WELL_KNOWN) == Some(self.own.as_str())
    }

    /// The answer to a request for the metadata: the document to GET and HEAD, 405 otherwise.
    pub fn response(&self, method: &Method) -> Response<Body> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            let mut resp = Response::new(refusal::empty());
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let mut resp = Response::new(refusal::full(self.document.clone()));
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Public, and the same for everyone: caches may keep it a while.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        resp
    }

    /// Adds `resource_metadata="<url>"` to a Bearer challenge in `resp`, if it has one.
    pub fn point_to(&self, resp: &mut Response<Body>) {
        let Some(challenge) = resp.headers().get(header::WWW_AUTHENTICATE) else {
            return;
        };
        let Ok(text) = challenge.to_str() else {
            return;
        };
        let pointed = if text.eq_ignore_ascii_case("bearer") {
            format!("{text} resource_metadata=\"{}\"", self.url)
        } else if text
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
        {
            format!("{text}, resource_metadata=\"{}\"", self.url)
        } else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&pointed) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn metadata(resource: &str) -> ResourceMetadata {
        let text = format!(
            "[[servers]]\nname = \"py\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
             [tokens]\nenabled = true\nresource = \"{resource}\"\n\
             [[tokens.issuers]]\nissuer = \"https://login.example\"\naudience = \"{resource}\"\n\
             jwks_file = \"jwks.json\"\nalgorithms = [\"RS256\"]\n\
             [[tokens.issuers]]\nissuer = \"corp-sso\"\naudience = \"a\"\n\
             jwks_file = \"jwks.json\"\nalgorithms = [\"RS256\"]\n"
        );
        let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        ResourceMetadata::new(&config.tokens).unwrap()
    }

    #[test]
    fn the_document_names_the_resource_and_issuers_that_are_urls() {
        let m = metadata("https://gw.example:8443/");
        let doc: serde_json::Value = serde_json::from_slice(&m.document).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "resource": "https://gw.example:8443/",
                "authorization_servers": ["https://login.example"],
                "bearer_methods_supported": ["header"],
                "resource_name": "agentgate",
            })
        );
        assert_eq!(
            m.url,
            "https://gw.example:8443/.well-known/oauth-protected-resource"
        );
        // A resource with a path: the well-known part goes before it, its last slash dropped.
        let m = metadata("https://edge.example/agentgate/");
        assert_eq!(
            m.url,
            "https://edge.example/.well-known/oauth-protected-resource/agentgate"
        );
        assert!(m.serves("/.well-known/oauth-protected-resource/agentgate"));
        assert!(!m.serves("/.well-known/oauth-protected-resource"));
    }

    #[test]
    fn served_at_the_resources_well_known_url_only() {
        let m = metadata("http://127.0.0.1:8080/");
        assert!(m.serves("/.well-known/oauth-protected-resource"));
        // Found there, the document would have to name that URL as its resource (RFC 9728 3.3).
        for path in [
            "/.well-known/oauth-protected-resource/servers/py/mcp",
            "/.well-known/oauth-protected-resourcex",
            "/.well-known/oauth-protected-resource/",
            "/.well-known/oauth-authorization-server",
            "/servers/py/mcp",
        ] {
            assert!(!m.serves(path), "{path}");
        }
        assert_eq!(m.response(&Method::GET).status(), StatusCode::OK);
        assert_eq!(m.response(&Method::HEAD).status(), StatusCode::OK);
        let post = m.response(&Method::POST);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
        assert!(post.headers().get(header::CACHE_CONTROL).is_none());
    }

    #[test]
    fn challenges_point_to_the_metadata() {
        let m = metadata("http://127.0.0.1:8080/");
        let mut resp = Response::new(refusal::empty());
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"agentgate\""),
        );
        m.point_to(&mut resp);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"agentgate\", resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\""
        );
        let challenge = |text: &'static str| {
            let mut resp = Response::new(refusal::empty());
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(text));
            m.point_to(&mut resp);
            resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        let pointer =
            "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\"";
        assert_eq!(challenge("Bearer"), format!("Bearer {pointer}"));
        assert_eq!(
            challenge("bearer error=\"x\""),
            format!("bearer error=\"x\", {pointer}")
        );
        // Other schemes, and look-alikes, are left alone.
        assert_eq!(challenge("BearerX realm=\"a\""), "BearerX realm=\"a\"");
        assert_eq!(challenge("Basic realm=\"a\""), "Basic realm=\"a\"");
        let mut none = Response::new(refusal::empty());
        m.point_to(&mut none);
        assert!(none.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn the_resource_is_held_to_what_rfc_9728_allows() {
        let parse = |tokens: &str| {
            Config::parse(
                &format!("[[servers]]\nname = \"py\"\nurl = \"http://127.0.0.1:1/mcp\"\n{tokens}"),
                "t.toml",
            )
            .err()
            .map(|e| e.to_string())
        };
        let issuer = "[[tokens.issuers]]\nissuer = \"https://login.example\"\naudience = \"a\"\n\
                      jwks_file = \"j.json\"\nalgorithms = [\"RS256\"]\n";
        for (resource, why) in [
            ("gw.example", "not a URL"),
            ("ftp://gw.example/", "http:// or https://"),
            ("https://gw.example/?x=1", "no query"),
            ("https://gw.example/#top", "no query and no fragment"),
            ("https://u:p@gw.example/", "credentials"),
            (
                "https://GW.example:443",
                "write it as \"https://gw.example/\"",
            ),
        ] {
            let e = parse(&format!(
                "[tokens]\nenabled = true\nresource = \"{resource}\"\n{issuer}"
            ))
            .unwrap_or_else(|| panic!("{resource} was accepted"));
            assert!(e.contains("tokens.resource") && e.contains(why), "{e}");
        }
        let e = parse("[tokens]\nresource = \"https://gw.example/\"\n").unwrap();
        assert!(e.contains("needs tokens.enabled = true"), "{e}");
        // Without an issuer that is a URL there is no authorization server to name.
        let e = parse(
            "[tokens]\nenabled = true\nresource = \"https://gw.example/\"\n\
             [[tokens.issuers]]\nissuer = \"corp-sso\"\naudience = \"a\"\n\
             jwks_file = \"j.json\"\nalgorithms = [\"RS256\"]\n",
        )
        .unwrap();
        assert!(e.contains("authorization servers"), "{e}");
        assert_eq!(
            parse(&format!(
                "[tokens]\nenabled = true\nresource = \"https://gw.example/\"\n{issuer}"
            )),
            None
        );
    }
}
