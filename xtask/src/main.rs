//! `cargo xtask`: the project tasks cargo cannot do alone. `setup` installs the test peers,
//! `ci` runs every gate, `bench` runs the benchmarks. Everything here is idempotent.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the tests need (Python and npm MCP peers under .peers/); idempotent.
    Setup,
    /// Every CI gate: setup, rustfmt, clippy (warnings denied), all tests, docs.
    Ci,
    /// Criterion benchmarks and the end-to-end load test (installs nginx-light when missing).
    Bench {
        /// Short runs: the whole thing in under two minutes.
        #[arg(long)]
        short: bool,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => setup(&root),
        Task::Ci => {
            setup(&root)?;
            run(&root, "cargo", &["fmt", "--all", "--check"], &[])?;
            run(
                &root,
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )?;
            run(
                &root,
                "cargo",
                &["test", "--workspace", "--locked", "--no-fail-fast"],
                &[],
            )?;
            run(
                &root,
                "cargo",
                &["doc", "--workspace", "--no-deps", "--locked"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )?;
            eprintln!("xtask: all gates passed");
            Ok(())
        }
        Task::Bench { short } => {
            ensure_nginx()?;
            let mut args = vec![
                "bench",
                "--locked",
                "-p",
                "agentgate-bench",
                "--bench",
                "parse",
                "--bench",
                "sse",
                "--",
            ];
            if short {
                args.extend(["--warm-up-time", "0.5", "--measurement-time", "1"]);
            }
            run(&root, "cargo", &args, &[])?;
            run(
                &root,
                "cargo",
                &[
                    "build",
                    "--release",
                    "--locked",
                    "-p",
                    "agentgate",
                    "-p",
                    "agentgate-bench",
                ],
                &[],
            )?;
            let bin = root.join("target/release/agentgate-bench");
            let gateway = root.join("target/release/agentgate");
            let mut load = vec!["--gateway".to_owned(), gateway.display().to_string()];
            if short {
                load.push("--short".to_owned());
            }
            let load: Vec<&str> = load.iter().map(String::as_str).collect();
            run(&root, bin.to_str().context("non-UTF-8 path")?, &load, &[])
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("{program} {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Installs the Python and npm peers into `.peers/`, redoing each only when its lock file
/// changed (a stamp file holds a copy of the lock that was installed).
fn setup(root: &Path) -> Result<()> {
    let peers_src = root.join("gateway/tests/peers");
    let dest = root.join(".peers");
    std::fs::create_dir_all(&dest)?;

    let requirements = peers_src.join("requirements.txt");
    let venv = dest.join("venv");
    let python = venv.join("bin/python");
    if !stamp_matches(&dest.join("python.stamp"), &requirements)? || !python.exists() {
        if !python.exists() {
            run(
                root,
                "python3",
                &["-m", "venv", venv.to_str().context("path")?],
                &[],
            )?;
        }
        run(
            root,
            python.to_str().context("path")?,
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                requirements.to_str().context("path")?,
            ],
            &[],
        )?;
        std::fs::copy(&requirements, dest.join("python.stamp"))?;
    }

    let lock = peers_src.join("package-lock.json");
    let node_dir = dest.join("node");
    let marker = node_dir.join("node_modules/@modelcontextprotocol/server-everything/package.json");
    if !stamp_matches(&dest.join("npm.stamp"), &lock)? || !marker.exists() {
        std::fs::create_dir_all(&node_dir)?;
        std::fs::copy(
            peers_src.join("package.json"),
            node_dir.join("package.json"),
        )?;
        std::fs::copy(&lock, node_dir.join("package-lock.json"))?;
        run(
            &node_dir,
            "npm",
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
            &[],
        )?;
        std::fs::copy(&lock, dest.join("npm.stamp"))?;
    }
    eprintln!("xtask: test peers ready in {}", dest.display());
    Ok(())
}

fn stamp_matches(stamp: &Path, source: &Path) -> Result<bool> {
    let want =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    Ok(std::fs::read(stamp).is_ok_and(|have| have == want))
}

/// nginx is the yardstick of the load test: Debian's nginx-light, installed when missing.
fn ensure_nginx() -> Result<()> {
    if Path::new("/usr/sbin/nginx").exists() {
        return Ok(());
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    if run(
        Path::new("/"),
        "apt-get",
        &["install", "-y", "-q", "nginx-light"],
        &env,
    )
    .is_err()
    {
        run(Path::new("/"), "apt-get", &["update", "-q"], &env)?;
        run(
            Path::new("/"),
            "apt-get",
            &["install", "-y", "-q", "nginx-light"],
            &env,
        )?;
    }
    Ok(())
}
