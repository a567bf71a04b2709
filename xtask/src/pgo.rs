//! The gateway's optimised build: profile-guided (PGO). An instrumented gateway serves the
//! training traffic of `agentgate-bench train`, and the gateway is built again with the profile
//! it wrote, so that the code MCP traffic runs is laid out and inlined for it. The gateway's
//! request path is many small steps across hyper, tokio and its own stages, more code than the
//! instruction cache holds: the profile is what puts the hot parts together.
//!
//! Everything lives under `target/pgo/`: `generate/` (the instrumented build), `raw/` (what it
//! wrote), `agentgate.profdata` (the merged profile), `use/` (the optimised build). Each build
//! keeps its own target directory, so neither rebuilds the other's crates. The training runs
//! again only when the instrumented gateway or the training traffic changed; a new profile
//! then rebuilds every crate of the optimised build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{add_component, output, run};

/// Builds the optimised gateway, training it first when needed; returns the binary.
pub fn gateway(root: &Path) -> Result<PathBuf> {
    let verbose = output(root, "rustc", &["-vV"])?;
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("rustc -vV names no host")?
        .to_owned();
    let profdata = llvm_profdata(root, &host)?;
    let pgo = root.join("target/pgo");
    // Either variable would replace the flags below (cargo gives them precedence), and the
    // build would come out silently unprofiled.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some() {
            bail!("{var} is set: unset it, the profile-guided build sets its own flags");
        }
    }
    // Flags for the host target only (with `--target`): without that, build scripts and proc
    // macros would be instrumented too, and the kernel programs (built for the BPF target)
    // must not be. Given as a TOML array, so a path with spaces stays one flag.
    let build = |dir: &str, rustflags: &[String]| {
        let quoted: Vec<String> = rustflags.iter().map(|f| format!("{f:?}")).collect();
        let config = format!("target.{host}.rustflags=[{}]", quoted.join(", "));
        run(
            root,
            "cargo",
            &[
                "build",
                "--release",
                "--locked",
                "-p",
                "agentgate",
                "--target",
                &host,
                "--target-dir",
                dir,
                "--config",
                &config,
            ],
            &[],
        )
    };
    run(
        root,
        "cargo",
        &["build", "--release", "--locked", "-p", "agentgate-bench"],
        &[],
    )?;
    let raw = pgo.join("raw");
    build(
        "target/pgo/generate",
        &[format!("-Cprofile-generate={}", raw.display())],
    )?;
    let instrumented = pgo.join(format!("generate/{host}/release/agentgate"));
    let driver = root.join("target/release/agentgate-bench");
    let profile = pgo.join("agentgate.profdata");
    // Trained again when the gateway changed, or the traffic: not for every change to the
    // load test that shares the driver's binary. (A new profile rebuilds every crate: rustc
    // names the profile among each one's inputs.)
    let (train, traffic) = (
        root.join("bench/src/train.rs"),
        root.join("bench/src/lib.rs"),
    );
    if !newer_than(&profile, &[&instrumented, &train, &traffic]) {
        let _ = std::fs::remove_dir_all(&raw);
        let dir = pgo.join("train");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pattern = raw.join("agentgate-%p-%m.profraw");
        run(
            root,
            path_str(&driver)?,
            &[
                "train",
                "--gateway",
                path_str(&instrumented)?,
                "--dir",
                path_str(&dir)?,
            ],
            &[("LLVM_PROFILE_FILE", path_str(&pattern)?)],
        )?;
        let mut merge = vec![
            "merge".to_owned(),
            "-o".to_owned(),
            path_str(&profile)?.to_owned(),
        ];
        for entry in std::fs::read_dir(&raw).context("the training wrote no profile")? {
            merge.push(path_str(&entry?.path())?.to_owned());
        }
        let merge: Vec<&str> = merge.iter().map(String::as_str).collect();
        run(root, path_str(&profdata)?, &merge, &[])?;
    }
    // Code the training does not reach is cold to the profile (laid out apart, inlined less)
    // but stays optimised for speed (`-pgso=false`), not made small.
    build(
        "target/pgo/use",
        &[
            format!("-Cprofile-use={}", profile.display()),
            "-Cllvm-args=-pgso=false".to_owned(),
        ],
    )?;
    Ok(pgo.join(format!("use/{host}/release/agentgate")))
}

/// The toolchain's llvm-profdata (the `llvm-tools` component, installed when missing): the
/// profile format follows rustc's LLVM, which a distribution's llvm-profdata may not read.
fn llvm_profdata(root: &Path, host: &str) -> Result<PathBuf> {
    let sysroot = output(root, "rustc", &["--print", "sysroot"])?;
    let tool = PathBuf::from(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/llvm-profdata"));
    if !tool.exists() {
        add_component(root, "llvm-tools")?;
    }
    Ok(tool)
}

/// Whether `file` exists and was modified after every one of `inputs`.
fn newer_than(file: &Path, inputs: &[&Path]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(made) = modified(file) else {
        return false;
    };
    inputs
        .iter()
        .all(|input| modified(input).is_some_and(|t| t < made))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("non-UTF-8 path")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn a_profile_is_fresh_only_when_newer_than_every_input() {
        let dir = std::env::temp_dir().join(format!("xtask-pgo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = |name: &str, secs: u64| {
            let path = dir.join(name);
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
            path
        };
        let (binary, traffic) = (at("binary", 1_000), at("traffic", 2_000));
        let missing = dir.join("missing");
        assert!(!newer_than(&missing, &[&binary]), "no profile yet");
        let profile = at("profile", 1_500);
        assert!(
            !newer_than(&profile, &[&binary, &traffic]),
            "traffic changed since"
        );
        let profile = at("profile", 3_000);
        assert!(newer_than(&profile, &[&binary, &traffic]));
        assert!(
            !newer_than(&profile, &[&binary, &missing]),
            "an input that is gone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
