//! Links OpenBLAS when the system has it: dense f32 matmuls (batched prefill and sampling on
//! CPU) then run about 2x faster than candle's own gemm, which has no AVX-512 path on stable
//! Rust. Without it personas builds and runs the same, slower. `PERSONAS_BLAS=0` opts out.
//!
//! Where to look, in order: `OPENBLAS_LIB_DIR`; `pkg-config openblas` (which knows conda, nix,
//! Homebrew and cross sysroots through `PKG_CONFIG_PATH` / `PKG_CONFIG_SYSROOT_DIR`); then the
//! active conda environment, Homebrew's prefix and the usual system directories. When nothing
//! is found, the build watches those directories, so installing OpenBLAS later is noticed by the
//! next `cargo build`. Which library was linked, and how it was found, is compiled in
//! (`PERSONAS_BLAS_LIB`) for run manifests.

use std::path::{Path, PathBuf};
use std::process::Command;

const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/opt/openblas/lib",
    "/usr/local/opt/openblas/lib",
];

const LIB_FILES: &[&str] = &["libopenblas.so", "libopenblas.dylib", "libopenblas.a"];

fn has_openblas(dir: &Path) -> bool {
    LIB_FILES.iter().any(|f| dir.join(f).exists())
}

/// The library directories `pkg-config --libs openblas` names, if it knows OpenBLAS.
fn pkg_config() -> Option<Vec<PathBuf>> {
    let program = std::env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(program)
        .args(["--libs", "openblas"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|flag| flag.strip_prefix("-L"))
            .map(PathBuf::from)
            .collect(),
    )
}

/// Directories to search after pkg-config: conda's and Homebrew's prefixes, then the system's.
fn fallback_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (var, sub) in [
        ("CONDA_PREFIX", "lib"),
        ("HOMEBREW_PREFIX", "opt/openblas/lib"),
    ] {
        if let Some(prefix) = std::env::var_os(var) {
            dirs.push(Path::new(&prefix).join(sub));
        }
    }
    dirs.extend(LIB_DIRS.iter().map(PathBuf::from));
    dirs
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(openblas)");
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "PERSONAS_BLAS",
        "OPENBLAS_LIB_DIR",
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_SYSROOT_DIR",
        "CONDA_PREFIX",
        "HOMEBREW_PREFIX",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var("PERSONAS_BLAS").is_ok_and(|v| v == "0") {
        return;
    }
    let explicit =
        std::env::var_os("OPENBLAS_LIB_DIR").map(|d| (PathBuf::from(d), "OPENBLAS_LIB_DIR"));
    let found = explicit
        .filter(|(d, _)| has_openblas(d))
        // pkg-config may name no -L at all: the library is on the default search path.
        .or_else(|| {
            pkg_config().map(|dirs| (dirs.into_iter().next().unwrap_or_default(), "pkg-config"))
        })
        .or_else(|| {
            fallback_dirs()
                .into_iter()
                .find(|d| has_openblas(d))
                .map(|d| (d, "search"))
        });
    match found {
        Some((dir, how)) => {
            if !dir.as_os_str().is_empty() {
                println!("cargo::rustc-link-search=native={}", dir.display());
            }
            println!("cargo::rustc-link-lib=openblas");
            println!("cargo::rustc-cfg=openblas");
            println!(
                "cargo::rustc-env=PERSONAS_BLAS_LIB=openblas ({how}{}{})",
                if dir.as_os_str().is_empty() { "" } else { ": " },
                dir.display()
            );
        }
        None => {
            // Noticed when OpenBLAS is installed: its directory's listing changes.
            for dir in fallback_dirs().iter().filter(|d| d.is_dir()) {
                println!("cargo::rerun-if-changed={}", dir.display());
            }
            println!(
                "cargo::warning=OpenBLAS not found (Debian: apt-get install libopenblas-dev; or set \
                 OPENBLAS_LIB_DIR); dense matmuls fall back to candle's gemm, about 2x slower on CPU"
            );
        }
    }
}
