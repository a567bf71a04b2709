//! Builds the kernel programs (gateway-ebpf) for the BPF target and leaves the object in OUT_DIR,
//! where `ebpf.rs` embeds it.
//!
//! The eBPF crate is built with the same (stable) toolchain as the rest, made to accept
//! `-Z build-std=core` through RUSTC_BOOTSTRAP, as NOTES.md of the eBPF spike measured. It needs
//! the toolchain's rust-src and a bpf-linker built against the toolchain's own LLVM: `cargo xtask
//! setup` installs both.

use aya_build::{Package, Toolchain};

#[allow(unsafe_code)] // set_var, see below.
fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        // Builds that never load the programs (fuzzing on nightly) get an empty object; the
        // daemon then reports interception as unavailable.
        let out = std::path::PathBuf::from(
            std::env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?,
        );
        std::fs::write(out.join("agentgate"), [])?;
        println!("cargo::warning=AYA_BUILD_SKIP=1: built without the kernel programs");
        return Ok(());
    }
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    if !toolchain.starts_with("nightly") && std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single-threaded here; the variable only reaches the nested
        // cargo that aya-build starts.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    if which_bpf_linker().is_none() {
        anyhow::bail!(
            "bpf-linker is not installed: run `cargo xtask setup` (it builds one against this toolchain's LLVM)"
        );
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "gateway-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom(Box::leak(toolchain.into_boxed_str())),
    )?;
    // The nested build leaves ~300 MB (core built for the BPF target) in OUT_DIR, once per
    // profile that builds this crate; only the copied object is used. Dropping it keeps a clean
    // `cargo xtask ci` within small disks, at the price of rebuilding core (~30 s) when the
    // kernel programs change.
    let out = std::path::PathBuf::from(
        std::env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?,
    );
    match std::fs::remove_dir_all(out.join("aya-build")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
}
