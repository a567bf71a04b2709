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

/// Values a parser accepts but whose use would overflow a clock or a semaphore (the daemon
/// then panicked at start or on every connection) are refused with their line.
#[test]
fn values_too_large_to_use_are_refused() {
    for (text, key, line) in [
        (
            "[limits]\nheader_read_timeout = \"300000000000y\"\n",
            "limits.header_read_timeout",
            2,
        ),
        (
            "[limits]\n\nshutdown_grace = \"101y\"\n",
            "limits.shutdown_grace",
            3,
        ),
        (
            "[listener]\nmax_connections = 4000000000000000000\n",
            "listener.max_connections",
            2,
        ),
        ("[ca]\nleaf_ttl = \"8000y\"\n", "ca.leaf_ttl", 2),
        ("[ca]\nleaf_ttl = \"1ms\"\n", "ca.leaf_ttl", 2),
        (
            "[runtime]\nworker_threads = 100000\n",
            "runtime.worker_threads",
            2,
        ),
        ("[interception]\nport = 0\n", "interception.port", 2),
    ] {
        let e = err(text);
        assert!(e.starts_with(&format!("test.toml:{line}: {key}:")), "{e}");
    }
    let e = err(
        "[audit]\ndir = \"/tmp/a\"\nkey_file = \"/tmp/a.key\"\ncheckpoint_interval = \"300000000000y\"\n",
    );
    assert!(
        e.contains("audit.checkpoint_interval") && e.contains("at most 100 years"),
        "{e}"
    );
    let c = Config::parse(
        "[ca]\nleaf_ttl = \"30d\"\n[limits]\nshutdown_grace = \"99y\"\n",
        "t.toml",
    );
    assert!(c.is_ok(), "{c:?}");
}

/// Names the gateway gives to what matched nothing cannot be configured: they would be told
/// apart from it nowhere (rules, rate limits, audit, metrics).
#[test]
fn reserved_names_are_refused() {
    let e = err("[[agents]]\nname = \"unknown\"\n");
    assert!(e.starts_with("test.toml:2: agents.name:"), "{e}");
    let e = err("[[servers]]\nname = \"-\"\nurl = \"http://x/\"\n");
    assert!(e.starts_with("test.toml:2: servers.name:"), "{e}");
}

/// Errors found after parsing still point at their key's line.
#[test]
fn cross_key_errors_name_their_line() {
    for (text, key, line) in [
        (
            "[logging]\nformat = \"json\"\nlevel = \"info,[\"\n",
            "logging.level",
            3,
        ),
        (
            "[interception]\n\nclient_crl_file = \"crl.pem\"\n",
            "interception.client_crl_file",
            3,
        ),
        (
            "[tokens]\nenabled = true\nmax_ttl = \"1h\"\ndefault_ttl = \"2h\"\n",
            "tokens.default_ttl",
            4,
        ),
        ("[tokens]\n\nrequire = true\n", "tokens.require", 3),
    ] {
        let e = err(text);
        assert!(e.starts_with(&format!("test.toml:{line}: {key}:")), "{e}");
    }
}

/// An upstream's `ca_file` is relative to the config file, as every other path.
#[test]
fn a_relative_ca_file_is_read_beside_the_config() {
    let dir = std::env::temp_dir().join(format!("agentgate-cafile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agentgate.toml");
    std::fs::write(
        &file,
        "[[servers]]\nname = \"a\"\nurl = \"https://x.example/mcp\"\nca_file = \"certs/int.pem\"\n",
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.servers[0].ca_file.as_deref(),
        Some(dir.join("certs/int.pem").as_path())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A query string (hosted servers put API keys there) is not shown in logs.
#[test]
fn a_url_query_is_not_logged() {
    let u = url::Url::parse("https://mcp.example.com/mcp?api_key=sk-123").unwrap();
    assert_eq!(loggable_url(&u), "https://mcp.example.com/mcp?...");
    let c = Config::parse(
        "[[servers]]\nname = \"a\"\nurl = \"https://mcp.example.com/mcp?api_key=sk-123\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(
        !c.servers[0].to_string().contains("sk-123"),
        "{}",
        c.servers[0]
    );
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
    let e = err("[listener]\nallowed_hosts = [\"ok.internal\",\n  \"gw:8080\"]\n");
    assert!(
        e.starts_with("test.toml:3: listener.allowed_hosts:") && e.contains("not a host name"),
        "{e}"
    );
    let c = Config::parse("[listener]\nallowed_hosts = [\"GW.Internal.\"]\n", "t.toml").unwrap();
    assert_eq!(c.listener.allowed_hosts, ["gw.internal"]);
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
    // HTTP/2: offered to https:// servers that ask for it; never over plain http://.
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\nhttp2 = true\n");
    assert!(
        e.starts_with("test.toml:4: servers.http2:") && e.contains("only negotiated over TLS"),
        "{e}"
    );
    let http2 = |server: &str| {
        Config::parse(&format!("[[servers]]\nname = \"a\"\n{server}"), "t.toml")
            .unwrap()
            .servers[0]
            .http2
    };
    assert!(http2("url = \"https://x/\"\nhttp2 = true\n"));
    assert!(!http2("url = \"https://x/\"\n"));
    assert!(!http2("url = \"https://x/\"\nhttp2 = false\n"));
    assert!(!http2("url = \"http://x/\"\n"));
    assert!(!http2("url = \"http://x/\"\nhttp2 = false\n"));
}

#[test]
fn duplicate_server_names_are_refused_at_the_second() {
    let e = err(
        "[[servers]]\nname = \"a\"\nurl = \"http://x/\"\n[[servers]]\nname = \"a\"\nurl = \"http://y/\"\n",
    );
    assert!(e.starts_with("test.toml:5: servers.name: duplicate"), "{e}");
}

#[test]
fn the_embedded_default_observes_and_a_file_without_policy_enforces() {
    let config = Config::embedded_default().unwrap();
    assert_eq!(config.policy.mode, policy::Mode::Observe);
    assert!(config.policy.rules.is_empty());
    assert_eq!(
        Config::parse("", "e.toml").unwrap().policy.mode,
        policy::Mode::Enforce
    );
}

#[test]
fn every_commented_example_rule_in_the_example_file_parses() {
    // The examples are commented out in the shipped file; uncommented, they must be valid.
    let text: String = DEFAULT_CONFIG
        .split_once("# Examples:\n")
        .unwrap()
        .1
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::parse(&text, "examples.toml").expect("example rules parse");
    assert_eq!(config.policy.rules.len(), 3);
    assert_eq!(config.policy.rules[1].params.len(), 1);
    assert_eq!(config.policy.rules[1].time.len(), 1);
}

#[test]
fn bad_rules_name_file_line_and_key() {
    let cases = [
        (
            "[[rules]]\nname = \"a\"\neffect = \"maybe\"\n",
            "test.toml:3: rules.effect:",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ncolour = 1\n",
            "unknown field `colour`",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[[rules]]\nname = \"a\"\neffect = \"deny\"\n",
            "test.toml:5: rules.name: duplicate rule name \"a\"",
        ),
        (
            "[[rules]]\nname = \"default-deny\"\neffect = \"allow\"\n",
            "cannot name a rule",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"[oops\"]\n",
            "test.toml:4: rules.tools: \"[oops\" is not a valid glob",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = []\n",
            "an empty list matches nothing",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[[rules.params]]\npointer = \"/x\"\neq = 1\n",
            "parameter conditions need `tools` or `prompts`",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"x\"\neq = 1\n",
            "test.toml:6: rules.params.pointer: \"x\" is not a JSON pointer",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\nregex = \"(\"\n",
            "test.toml:7: rules.params.regex: not a regular expression",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\neq = 1\nregex = \"a\"\n",
            "more than one matcher",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\n",
            "needs one matcher",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\npath_prefix = [\"srv\"]\n",
            "is not an absolute path",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\nurl_hosts = [\"a.com/x\"]\n",
            "is not a host name",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\nsql = { statements = [\"selct\"] }\n",
            "unknown statement kind \"selct\"",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"deny\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\nsql = { deny_tables = [\"financials\"] }\n",
            "test.toml:6: rules.params.sql: the sql matcher belongs on an allow rule",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\ntools = [\"t\"]\n[[rules.params]]\npointer = \"/x\"\nrange = { min = 5, max = 1 }\n",
            "min <= max",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[[rules.time]]\nfrom = \"9am\"\nto = \"17:00\"\n",
            "test.toml:5: rules.time.from: \"9am\" is not a time of day",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[[rules.time]]\nfrom = \"09:00\"\nto = \"17:00\"\ntz = \"Mars/Olympus\"\n",
            "test.toml:7: rules.time.tz: \"Mars/Olympus\" is not a known time zone",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[[rules.time]]\ndays = [\"someday\"]\nfrom = \"09:00\"\nto = \"17:00\"\n",
            "is not a weekday",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"deny\"\n[rules.rate]\nrequests = 1\nper = \"1s\"\n",
            "a rate limit belongs on an allow rule",
        ),
        (
            "[[rules]]\nname = \"a\"\neffect = \"allow\"\n[rules.rate]\nrequests = 1\nper = \"soon\"\n",
            "is not a duration",
        ),
        ("[policy]\nmode = \"audit\"\n", "test.toml:2: policy.mode:"),
        (
            "[[policy.pins]]\nserver = \"s\"\ntool = \"t\"\nsha256 = \"abc\"\n",
            "must be 64 hex digits",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text}\n  got: {e}\n  want: {want}");
    }
}

#[test]
fn included_rule_files_are_read_and_their_errors_name_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules.d")).unwrap();
    std::fs::write(
        dir.path().join("rules.d/10-a.toml"),
        "[[rules]]\nname = \"from-a\"\neffect = \"allow\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.d/20-b.toml"),
        "[[rules]]\nname = \"from-b\"\neffect = \"deny\"\ntools = [\"x\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("rules.d/notes.txt"), "ignored").unwrap();
    let main = dir.path().join("agentgate.toml");
    std::fs::write(
        &main,
        "[policy]\ninclude = [\"rules.d\"]\n[[rules]]\nname = \"main\"\neffect = \"allow\"\n",
    )
    .unwrap();
    let config = Config::load(&main).unwrap();
    let names: Vec<&str> = config
        .policy
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["main", "from-a", "from-b"]);
    std::fs::write(
        dir.path().join("rules.d/20-b.toml"),
        "[[rules]]\nname = \"from-b\"\neffect = \"deny\"\n\ntools = [\"[\"]\n",
    )
    .unwrap();
    let e = Config::load(&main).unwrap_err().to_string();
    assert!(e.contains("rules.d/20-b.toml:5: rules.tools:"), "{e}");
    std::fs::write(
        dir.path().join("rules.d/20-b.toml"),
        "[[rules]]\nname = \"main\"\neffect = \"deny\"\n",
    )
    .unwrap();
    let e = Config::load(&main).unwrap_err().to_string();
    assert!(
        e.contains("20-b.toml:2: rules.name: duplicate rule name \"main\""),
        "{e}"
    );
}
