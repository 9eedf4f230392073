//! Links OpenBLAS when the system has it: dense f32 matmuls (batched prefill and sampling on
//! CPU) then run about 2x faster than candle's own gemm, which has no AVX-512 path on stable
//! Rust. Without it personas builds and runs the same, slower. `PERSONAS_BLAS=0` opts out.

use std::path::Path;

const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/opt/openblas/lib",
    "/usr/local/opt/openblas/lib",
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(openblas)");
    println!("cargo::rerun-if-env-changed=PERSONAS_BLAS");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("PERSONAS_BLAS").is_ok_and(|v| v == "0") {
        return;
    }
    let found = LIB_DIRS.iter().find(|dir| {
        ["libopenblas.so", "libopenblas.dylib"]
            .iter()
            .any(|f| Path::new(dir).join(f).exists())
    });
    match found {
        Some(dir) => {
            println!("cargo::rustc-link-search=native={dir}");
            println!("cargo::rustc-link-lib=openblas");
            println!("cargo::rustc-cfg=openblas");
        }
        None => println!(
            "cargo::warning=OpenBLAS not found (Debian: apt-get install libopenblas-dev); \
             dense matmuls fall back to candle's gemm, about 2x slower on CPU"
        ),
    }
}
