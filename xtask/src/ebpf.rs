//! `cargo xtask build-ebpf`: builds the XDP programs by the route the brief sets (nightly
//! rustc to LLVM bitcode for `bpfel-unknown-none`, then the same nightly's `llc`), with no
//! bpf-linker, and writes the objects that the data plane and the benchmark embed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The eBPF crate (its own workspace: it builds only with nightly for the BPF target).
const CRATE_DIR: &str = "ebpf/xdp";
/// The toolchain that builds it.
const TOOLCHAIN: &str = "nightly";
/// The BPF target triple.
const TARGET: &str = "bpfel-unknown-none";
/// (cargo bin target, committed object) pairs.
pub(crate) const OBJECTS: [(&str, &str); 2] =
    [("portcullis-xdp", "ebpf/portcullis-xdp.bpf.o"), ("portcullis-xdp-bench", "ebpf/portcullis-xdp-bench.bpf.o")];

const INSTALL_HINT: &str = "install them with:\n    rustup toolchain install nightly --profile minimal\n    \
                            rustup component add rust-src llvm-tools --toolchain nightly";

/// Builds every object into its committed path.
pub(crate) fn build(root: &Path) -> Result<()> {
    let sysroot = check_prerequisites()?;
    let llc = sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llc");
    let crate_dir = root.join(CRATE_DIR);
    for (bin, object) in OBJECTS {
        eprintln!("xtask: building {bin} (nightly, {TARGET}, LLVM bitcode)");
        // rustc writes the bitcode to a path of ours: where cargo keeps intermediate artifacts
        // differs between nightlies (`deps/<name>-<hash>.bc`, later `build/<pkg>/<hash>/out/`).
        let bitcode =
            crate_dir.join("target").join(TARGET).join("release").join(format!("{}.bc", bin.replace('-', "_")));
        // A stale file would hide a build that wrote nothing: remove it first.
        match std::fs::remove_file(&bitcode) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("removing {}", bitcode.display()));
            }
            _ => {}
        }
        let emit = format!("--emit=llvm-bc={}", bitcode.display());
        run(Command::new("cargo")
            .current_dir(&crate_dir)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .args([&format!("+{TOOLCHAIN}"), "rustc", "--release", "--target", TARGET, "-Z", "build-std=core"])
            .args(["--bin", bin, "--", &emit, "-C", "linker=/bin/true"]))?;
        if !bitcode.is_file() {
            bail!("cargo built {bin} but wrote no {}", bitcode.display());
        }
        let out = root.join(object);
        eprintln!("xtask: llc {} -> {}", bitcode.display(), out.display());
        run(Command::new(&llc)
            .args(["-march=bpfel", "-mcpu=v3", "-filetype=obj", "-O2"])
            .arg(&bitcode)
            .arg("-o")
            .arg(&out))?;
    }
    Ok(())
}

/// Returns the nightly sysroot once the toolchain, rust-src and llvm-tools are all there.
fn check_prerequisites() -> Result<PathBuf> {
    let output = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output();
    let sysroot = match output {
        Ok(output) if output.status.success() => PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()),
        Ok(_) => bail!("the {TOOLCHAIN} toolchain is not installed; {INSTALL_HINT}"),
        Err(error) => bail!("rustup is not available ({error}); the eBPF build needs rustup with {INSTALL_HINT}"),
    };
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        bail!("the rust-src component of {TOOLCHAIN} is missing (needed by -Z build-std=core); {INSTALL_HINT}");
    }
    let llc = sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llc");
    if !llc.is_file() {
        bail!("llc from the llvm-tools component of {TOOLCHAIN} is missing ({}); {INSTALL_HINT}", llc.display());
    }
    Ok(sysroot)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
