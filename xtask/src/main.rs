//! `cargo xtask`: the project tasks cargo cannot do alone. `setup` installs the test peers,
//! `build` makes the optimised (profile-guided) gateway, `run` runs it, `ci` runs every gate,
//! `bench` runs the benchmarks. Everything here is idempotent.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod pgo;

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need, when missing: the toolchain's rust-src and a
    /// bpf-linker built against its LLVM (for the kernel programs), and the Python and npm MCP
    /// test peers under .peers/. Idempotent.
    Setup,
    /// Build the gateway as deployed: a release build optimised with a profile of MCP
    /// traffic (instrumented build, training run, final build; see `xtask/src/pgo.rs`). Prints
    /// the binary's path.
    Build,
    /// Run the gateway (the `build` task's binary); arguments after `--` go to `agentgate`,
    /// default `run`.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Every CI gate: setup, rustfmt, clippy (warnings denied), the vendored simd-json without
    /// runtime detection, all tests, docs.
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
        Task::Setup => {
            ebpf_toolchain(&root)?;
            setup(&root)
        }
        Task::Build => {
            ebpf_toolchain(&root)?;
            let gateway = pgo::gateway(&root)?;
            println!("{}", gateway.display());
            Ok(())
        }
        Task::Run { args } => {
            ebpf_toolchain(&root)?;
            let gateway = pgo::gateway(&root)?;
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            if argv.is_empty() {
                argv.push("run");
            }
            eprintln!("xtask: {} {}", gateway.display(), argv.join(" "));
            // In place of this process: signals (the drain on Ctrl-C) and the exit code are
            // the gateway's own.
            let error = std::os::unix::process::CommandExt::exec(
                Command::new(&gateway).args(&argv).current_dir(&root),
            );
            Err(error).with_context(|| format!("cannot start {}", gateway.display()))
        }
        Task::Ci => {
            ebpf_toolchain(&root)?;
            setup(&root)?;
            let gates: [Gate; 6] = [
                (&["fmt", "--all", "--check"], &[]),
                (
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
                ),
                // The patched simd-json as other architectures build it (no runtime detection):
                // the gateway's own build only takes the x86 runtime-detection path.
                (
                    &[
                        "check",
                        "--manifest-path",
                        "vendor/simd-json/Cargo.toml",
                        "--lib",
                        "--no-default-features",
                        "--features",
                        "swar-number-parsing",
                        "--locked",
                        "--target-dir",
                        "target/vendor-simd-json",
                    ],
                    &[],
                ),
                // The kernel programs, linted for the target they run on.
                (
                    &[
                        "clippy",
                        "-p",
                        "gateway-ebpf",
                        "--bins",
                        "--locked",
                        "--target",
                        "bpfel-unknown-none",
                        "-Z",
                        "build-std=core",
                        "--",
                        "-D",
                        "warnings",
                    ],
                    &[("RUSTC_BOOTSTRAP", "1")],
                ),
                // Includes the root-only eBPF tests: CI runs as root, and they fail without it.
                (&["test", "--workspace", "--locked", "--no-fail-fast"], &[]),
                (
                    &["doc", "--workspace", "--no-deps", "--locked"],
                    &[("RUSTDOCFLAGS", "-D warnings")],
                ),
            ];
            // A clean clone gains nothing from incremental caches, and they cost ~0.7 GB.
            let clean_clone = std::env::var_os("CI").is_some();
            // Disk is the resource a CI machine most often lacks; say how much there was.
            let _ = run(&root, "df", &["-h", "."], &[]);
            for (args, env) in gates {
                let mut env = env.to_vec();
                if clean_clone {
                    env.push(("CARGO_INCREMENTAL", "0"));
                }
                run(&root, "cargo", args, &env)?;
            }
            eprintln!("xtask: all gates passed");
            Ok(())
        }
        Task::Bench { short } => {
            ebpf_toolchain(&root)?;
            ensure_nginx()?;
            let benches = [
                "bench",
                "--locked",
                "-p",
                "agentgate-bench",
                "--bench",
                "parse",
                "--bench",
                "sse",
                "--bench",
                "policy",
            ];
            // Everything is built first, so that the time the run reports is the benchmarks'.
            let mut build = benches.to_vec();
            build.push("--no-run");
            run(&root, "cargo", &build, &[])?;
            // The gateway as deployed (profile-guided); this also builds agentgate-bench.
            let gateway = pgo::gateway(&root)?;
            let started = std::time::Instant::now();
            let mut args = benches.to_vec();
            args.push("--");
            if short {
                // Ten samples is criterion's least; enough for a figure to read, not to compare.
                args.extend([
                    "--warm-up-time",
                    "0.3",
                    "--measurement-time",
                    "0.7",
                    "--sample-size",
                    "10",
                ]);
            }
            run(&root, "cargo", &args, &[])?;
            let criterion = started.elapsed();
            let bin = root.join("target/release/agentgate-bench");
            let mut load = vec!["--gateway".to_owned(), gateway.display().to_string()];
            if short {
                load.push("--short".to_owned());
            }
            let load: Vec<&str> = load.iter().map(String::as_str).collect();
            run(&root, bin.to_str().context("non-UTF-8 path")?, &load, &[])?;
            let total = started.elapsed();
            eprintln!(
                "xtask: benchmarks ran {:.0} s (criterion {:.0} s, end-to-end {:.0} s), builds not counted{}",
                total.as_secs_f64(),
                criterion.as_secs_f64(),
                (total - criterion).as_secs_f64(),
                if short {
                    format!(
                        "; short mode target < 120 s   {}",
                        if total.as_secs() < 120 {
                            "ok"
                        } else {
                            "MISSED"
                        }
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}

/// A cargo invocation of the CI gates: arguments and extra environment.
type Gate<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Installs a rustup component for the active toolchain.
fn add_component(root: &Path, component: &str) -> Result<()> {
    let toolchain = output(root, "rustup", &["show", "active-toolchain"])?;
    let toolchain = toolchain
        .split_whitespace()
        .next()
        .context("no active toolchain")?
        .to_owned();
    run(
        root,
        "rustup",
        &["component", "add", component, "--toolchain", &toolchain],
        &[],
    )
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

/// What the kernel programs are built with: the toolchain's rust-src (for `-Z build-std=core`)
/// and a bpf-linker linked against the toolchain's own libLLVM (Debian's LLVM is older than
/// rustc's). Both are installed only when missing or broken.
fn ebpf_toolchain(root: &Path) -> Result<()> {
    let sysroot = output(root, "rustc", &["--print", "sysroot"])?;
    let sysroot = PathBuf::from(sysroot.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        add_component(root, "rust-src")?;
    }
    let home = std::env::var("HOME").context("HOME")?;
    // Where cargo puts what it installs, so that it lands on the PATH rustup set up.
    let cargo_root = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&home).join(".cargo"));
    // A bpf-linker that runs may still be linked to another toolchain's LLVM: the stamp says
    // which rustc it was built for.
    let verbose = output(root, "rustc", &["-vV"])?;
    let stamp = cargo_root.join("bpf-linker.rustc");
    let works = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let same_rustc = std::fs::read_to_string(&stamp).is_ok_and(|s| s == verbose);
    if works && (same_rustc || !stamp.exists()) {
        return Ok(());
    }
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc -vV names no LLVM version")?
        .to_owned();
    let lib = sysroot.join("lib");
    // The real ELF (its file name is its SONAME), not the linker script beside it.
    let llvm = std::fs::read_dir(&lib)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let prefix = PathBuf::from(&home)
        .join(".local/share/bpf-linker-llvm")
        .join(sysroot.file_name().context("sysroot")?);
    std::fs::create_dir_all(prefix.join("lib"))?;
    for link in [
        prefix.join("lib/libLLVM.so"),
        prefix.join("lib").join(llvm.file_name().context("name")?),
    ] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)?;
    }
    let features = format!("llvm-{major}");
    run(
        root,
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &features,
            "--root",
            cargo_root.to_str().context("path")?,
        ],
        &[("LLVM_PREFIX", prefix.to_str().context("path")?)],
    )?;
    std::fs::write(&stamp, verbose)?;
    Ok(())
}

/// The bpf-linker release the kernel programs are built with.
const BPF_LINKER_VERSION: &str = "0.13.0";

fn output(dir: &Path, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Installs the Python and npm peers into `.peers/`, redoing each only when its lock file
/// changed (a stamp file holds a copy of the lock that was installed).
fn setup(root: &Path) -> Result<()> {
    let peers_src = root.join("gateway/tests/peers");
    let dest = root.join(".peers");
    std::fs::create_dir_all(&dest)?;

    python_venv(
        root,
        &peers_src.join("requirements.txt"),
        &dest.join("venv"),
        &dest.join("python.stamp"),
    )?;
    python_venv(
        root,
        &peers_src.join("requirements-bridge.txt"),
        &dest.join("bridge-venv"),
        &dest.join("bridge.stamp"),
    )?;

    let lock = peers_src.join("package-lock.json");
    let node_dir = dest.join("node");
    let marker = node_dir.join("node_modules/@modelcontextprotocol/server-postgres/package.json");
    if !stamp_matches(&dest.join("npm.stamp"), &lock)? || !marker.exists() {
        std::fs::create_dir_all(&node_dir)?;
        std::fs::copy(
            peers_src.join("package.json"),
            node_dir.join("package.json"),
        )?;
        std::fs::copy(&lock, node_dir.join("package-lock.json"))?;
        check_node()?;
        run(
            &node_dir,
            "npm",
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
            &[],
        )?;
        std::fs::copy(&lock, dest.join("npm.stamp"))?;
    }
    ensure_postgres()?;
    eprintln!("xtask: test peers ready in {}", dest.display());
    Ok(())
}

/// A venv at `venv` with exactly `requirements`, made afresh when they change or the venv is
/// broken (a `python3 -m venv` that failed half-way leaves a python without pip).
fn python_venv(root: &Path, requirements: &Path, venv: &Path, stamp: &Path) -> Result<()> {
    let python = venv.join("bin/python");
    let has_pip = || {
        Command::new(&python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if stamp_matches(stamp, requirements)? && has_pip() {
        return Ok(());
    }
    let make = |root: &Path| {
        run(
            root,
            "python3",
            &["-m", "venv", "--clear", venv.to_str().context("path")?],
            &[],
        )
    };
    if make(root).is_err() {
        // Debian ships venv (and ensurepip) apart from python3.
        apt_install("python3-venv")?;
        make(root)?;
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
    std::fs::copy(requirements, stamp)?;
    Ok(())
}

/// The locked npm peers need Node.js 20 or later (their HTTP server package says so, and
/// fails at run time, not install time, on older ones).
fn check_node() -> Result<()> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let major = version
        .as_deref()
        .and_then(|v| v.trim_start_matches('v').split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 20 => Ok(()),
        _ => bail!(
            "the npm test peers need Node.js 20 or later with npm (found {}); install them (Debian 13's nodejs and npm packages, for one)",
            version.as_deref().unwrap_or("no node")
        ),
    }
}

/// PostgreSQL for the policy tests (Debian's package; the tests start their own clusters).
fn ensure_postgres() -> Result<()> {
    let installed = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.path().join("bin/initdb").exists())
    });
    if installed {
        return Ok(());
    }
    apt_install("postgresql")
}

fn apt_install(package: &str) -> Result<()> {
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    // A freshly booted machine may be running unattended upgrades: wait for the lock.
    let lock = ["-o", "DPkg::Lock::Timeout=600"];
    let install = [&lock[..], &["install", "-y", "-q", package]].concat();
    if run(Path::new("/"), "apt-get", &install, &env).is_err() {
        let update = [&lock[..], &["update", "-q"]].concat();
        run(Path::new("/"), "apt-get", &update, &env)?;
        run(Path::new("/"), "apt-get", &install, &env)?;
    }
    Ok(())
}

fn stamp_matches(stamp: &Path, source: &Path) -> Result<bool> {
    let want =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    Ok(std::fs::read(stamp).is_ok_and(|have| have == want))
}

/// nginx is the yardstick of the load test: Debian's nginx-light, installed when missing (or,
/// where a release has no such package any more, Debian 13's, its plain `nginx`).
fn ensure_nginx() -> Result<()> {
    if Path::new("/usr/sbin/nginx").exists() {
        return Ok(());
    }
    apt_install("nginx-light").or_else(|light| {
        eprintln!("xtask: no nginx-light ({light:#}); installing nginx");
        apt_install("nginx")
    })
}
