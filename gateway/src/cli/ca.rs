//! `agentgate ca init|install`: the host CA that intercepted HTTPS connections are terminated
//! with, and its place in the system trust store.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::{EXIT_BAD_CONFIG, EXIT_UNAVAILABLE, tls::ca};

/// Where Debian-style systems keep local trust anchors for `update-ca-certificates`.
const DEFAULT_STORE: &str = "/usr/local/share/ca-certificates";
/// The bundle `update-ca-certificates` writes.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create the host CA: a key (mode 0600) and a certificate at ca.key_file and ca.cert_file
    /// (default /var/lib/agentgate/ca/), valid only for the hosts of the config's https://
    /// servers. Refuses to replace an existing CA without --force.
    Init {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Replace an existing CA (agents that trust the old one will refuse the new one).
        #[arg(long)]
        force: bool,
    },
    /// Add the host CA to the system trust store (as <STORE>/agentgate.crt, then
    /// `update-ca-certificates`) and print the environment variables Node and Python need.
    Install {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The trust-anchor directory.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STORE)]
        store: PathBuf,
        /// Only copy the certificate; do not run update-ca-certificates.
        #[arg(long)]
        no_update: bool,
    },
}

pub fn main(action: Action) -> i32 {
    match action {
        Action::Init { config, force } => {
            let config = match super::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return super::bad_config(&e),
            };
            let hosts = config.https_hosts();
            match ca::init(&config.ca, &hosts, force) {
                Ok(fingerprint) => {
                    let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
                    println!(
                        "Created the host CA:\n  certificate {}\n  key         {} (mode 0600)\n  SHA-256     {fingerprint}\n  valid for   {} (the https:// servers configured; run `ca init --force` again when they change)\nNext: `agentgate ca install`, and interception.https = true.",
                        config.ca.cert_file.display(),
                        config.ca.key_file.display(),
                        names.join(", ")
                    );
                    0
                }
                Err(e) => {
                    eprintln!("agentgate ca init: {e}");
                    EXIT_UNAVAILABLE
                }
            }
        }
        Action::Install {
            config,
            store,
            no_update,
        } => {
            let config = match super::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return super::bad_config(&e),
            };
            match install(&config.ca.cert_file, &store, no_update) {
                Ok(()) => 0,
                Err(code) => code,
            }
        }
    }
}

fn install(cert: &Path, store: &Path, no_update: bool) -> Result<(), i32> {
    let certs = crate::tls::certificates(cert).map_err(|e| {
        eprintln!("agentgate ca install: {e} (run `agentgate ca init` first)");
        EXIT_BAD_CONFIG
    })?;
    let target = store.join("agentgate.crt");
    let pem = std::fs::read(cert).map_err(|e| {
        eprintln!("agentgate ca install: cannot read {}: {e}", cert.display());
        EXIT_UNAVAILABLE
    })?;
    std::fs::create_dir_all(store)
        .and_then(|()| std::fs::write(&target, pem))
        .map_err(|e| {
            eprintln!(
                "agentgate ca install: cannot write {}: {e}",
                target.display()
            );
            EXIT_UNAVAILABLE
        })?;
    let fingerprint = certs
        .first()
        .map(|c| ca::fingerprint(c))
        .unwrap_or_default();
    println!("Wrote {} (SHA-256 {fingerprint}).", target.display());
    let bundle = if no_update {
        println!("Skipped update-ca-certificates: the system bundle does not include it yet.");
        PathBuf::new()
    } else {
        let status = std::process::Command::new("update-ca-certificates").status();
        match status {
            Ok(s) if s.success() => {
                println!("Updated the system trust store.");
                PathBuf::from(SYSTEM_BUNDLE)
            }
            Ok(s) => {
                eprintln!("agentgate ca install: update-ca-certificates failed ({s})");
                return Err(EXIT_UNAVAILABLE);
            }
            Err(e) => {
                eprintln!(
                    "agentgate ca install: cannot run update-ca-certificates ({e}); install Debian's ca-certificates package, or pass --no-update and use your system's tool"
                );
                return Err(EXIT_UNAVAILABLE);
            }
        }
    };
    println!(
        "Agents that do not read the system store need, in their environment:\n\
         export NODE_EXTRA_CA_CERTS={}   # Node.js (adds to its built-in roots)",
        target.display()
    );
    if no_update {
        // SSL_CERT_FILE replaces Python's roots: pointed at the host CA alone, no other
        // HTTPS site would verify.
        println!(
            "For Python (ssl, httpx, requests), append {} to the bundle it uses, and point\n\
             SSL_CERT_FILE and REQUESTS_CA_BUNDLE at that bundle (they replace certifi's roots).",
            target.display()
        );
    } else {
        println!(
            "export SSL_CERT_FILE={}   # Python ssl and httpx (replaces certifi's roots)\n\
             export REQUESTS_CA_BUNDLE={}   # Python requests",
            bundle.display(),
            bundle.display()
        );
    }
    Ok(())
}
