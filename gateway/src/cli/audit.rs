//! `agentgate audit verify|public-key`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    audit::{self, Checkpoint, log},
};

/// Exit code of `verify` when the log does not verify.
pub const EXIT_TAMPERED: i32 = 1;

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Check a log's chain and signed checkpoints; name the first bad entry. With --trusted,
    /// also prove the log still holds everything an earlier checkpoint covered (it only grew).
    /// Exits 0 when it verifies, 1 when it does not.
    Verify {
        /// The log file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The gateway's public key, 64 hex digits (from `agentgate audit public-key`).
        #[arg(long, value_name = "HEX")]
        public_key: String,
        /// An earlier checkpoint (its JSON), kept outside the log.
        #[arg(long, value_name = "FILE")]
        trusted: Option<PathBuf>,
    },
    /// Print the public key of a signing key file, to verify checkpoints elsewhere.
    PublicKey {
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
}

pub fn main(action: Action) -> i32 {
    match action {
        Action::Verify {
            file,
            public_key,
            trusted,
        } => {
            let key = match audit::parse_public_key(&public_key) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("agentgate audit verify: --public-key: {e}");
                    return EXIT_BAD_CONFIG;
                }
            };
            let trusted: Option<Checkpoint> = match trusted.as_deref().map(std::fs::read) {
                None => None,
                Some(Ok(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(cp) => Some(cp),
                    Err(e) => {
                        eprintln!("agentgate audit verify: --trusted: not a checkpoint: {e}");
                        return EXIT_BAD_CONFIG;
                    }
                },
                Some(Err(e)) => {
                    eprintln!("agentgate audit verify: --trusted: {e}");
                    return EXIT_UNAVAILABLE;
                }
            };
            match log::verify(&file, &key, trusted.as_ref()) {
                Ok(s) => {
                    let unsigned = match (s.last_seq, s.last_checkpoint) {
                        (Some(last), Some(cp)) => last - cp,
                        (Some(last), None) => last + 1,
                        _ => 0,
                    };
                    println!(
                        "ok: {} entries, {} checkpoints; {unsigned} entries after the last checkpoint are not signed yet{}",
                        s.entries,
                        s.checkpoints,
                        s.torn_tail_at.map_or(String::new(), |o| format!(
                            "; a torn last frame at byte {o} (a crash mid-write) is cut when the gateway starts"
                        )),
                    );
                    0
                }
                Err(e) => {
                    match e.entry {
                        Some(n) => println!("FAILED at entry {n}: {e}"),
                        None => println!("FAILED: {e}"),
                    }
                    EXIT_TAMPERED
                }
            }
        }
        Action::PublicKey { key_file } => match std::fs::read_to_string(&key_file) {
            Ok(text) => match audit::parse_secret_key(&text) {
                Some(k) => {
                    println!("{}", audit::hex(k.verifying_key().as_bytes()));
                    0
                }
                None => {
                    eprintln!(
                        "agentgate audit public-key: {}: not an Ed25519 secret key",
                        key_file.display()
                    );
                    EXIT_BAD_CONFIG
                }
            },
            Err(e) => {
                eprintln!("agentgate audit public-key: {}: {e}", key_file.display());
                EXIT_UNAVAILABLE
            }
        },
    }
}
