use super::*;

fn err(text: &str) -> String {
    match Config::parse(text, "test.toml") {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_example_file_is_the_embedded_default_and_parses() {
    let from_file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../agentgate.example.toml"
    ))
    .unwrap();
    assert_eq!(from_file, DEFAULT_CONFIG);
    let config = Config::embedded_default().unwrap();
    assert_eq!(config.listener.address.to_string(), raw::DEFAULT_LISTEN);
    assert_eq!(
        config.admin.address.map(|a| a.to_string()).as_deref(),
        Some(raw::DEFAULT_ADMIN)
    );
    assert_eq!(
        config.limits.max_request_bytes,
        raw::DEFAULT_MAX_REQUEST_BYTES
    );
    assert_eq!(
        config.limits.header_read_timeout,
        raw::DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(config.servers.len(), 1);
    assert_eq!(config.servers[0].name.as_str(), "everything");
}

#[test]
fn an_empty_file_gets_every_default() {
    let config = Config::parse("", "empty.toml").unwrap();
    assert_eq!(config.limits.max_sessions, raw::DEFAULT_MAX_SESSIONS);
    assert!(config.servers.is_empty());
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = err("[listener]\naddress = \"127.0.0.1:1\"\nmax_conections = 5\n");
    assert!(
        e.starts_with("test.toml:3: listener.max_conections:"),
        "{e}"
    );
    assert!(e.contains("unknown field"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\ntoken = \"s\"\n");
    assert!(e.starts_with("test.toml:4: servers.token:"), "{e}");
}

#[test]
fn bad_values_name_file_line_and_key() {
    let e = err("[limits]\n\nheader_read_timeout = \"soon\"\n");
    assert!(
        e.starts_with("test.toml:3: limits.header_read_timeout:"),
        "{e}"
    );
    let e = err("[limits]\nmax_request_bytes = 0\n");
    assert!(
        e.starts_with("test.toml:2: limits.max_request_bytes:"),
        "{e}"
    );
    let e = err("[listener]\naddress = \"nowhere\"\n");
    assert!(e.starts_with("test.toml:2: listener.address:"), "{e}");
    let e = err("[[servers]]\nname = \"a b\"\nurl = \"http://x/\"\n");
    assert!(
        e.starts_with("test.toml:2: servers.name:") && e.contains("must match"),
        "{e}"
    );
    let e = err("[logging]\nformat = \"xml\"\n");
    assert!(e.starts_with("test.toml:2: logging.format:"), "{e}");
}

#[test]
fn server_urls_are_checked() {
    for (url, why) in [
        ("ftp://x/", "only http"),
        ("not a url", "is not a URL"),
        ("http://u:p@x/", "credentials"),
        ("http://x/#f", "fragment"),
    ] {
        let e = err(&format!("[[servers]]\nname = \"a\"\nurl = \"{url}\"\n"));
        assert!(
            e.starts_with("test.toml:3: servers.url:") && e.contains(why),
            "{url}: {e}"
        );
    }
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\nca_file = \"/ca.pem\"\n");
    assert!(e.starts_with("test.toml:4: servers.ca_file:"), "{e}");
}

#[test]
fn duplicate_server_names_are_refused_at_the_second() {
    let e = err(
        "[[servers]]\nname = \"a\"\nurl = \"http://x/\"\n[[servers]]\nname = \"a\"\nurl = \"http://y/\"\n",
    );
    assert!(e.starts_with("test.toml:5: servers.name: duplicate"), "{e}");
}
