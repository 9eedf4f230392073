#!/usr/bin/env bash
# Builds personas with `--features cuda` on a machine without a GPU or a system CUDA toolkit.
#
#   scripts/cuda_build.sh            # cargo build --release --features cuda
#   scripts/cuda_build.sh check      # cargo check --release --features cuda (what the tests run)
#
# The toolkit comes from NVIDIA's PyPI wheels, pinned to CUDA 13.0 (the H200 machines' nvcc
# and driver; the unpinned 13.5 wheels emit PTX 9.5, which a 13.0 driver refuses), installed
# once under target/cuda/. The wheels carry no driver library, so the link against `-lcuda`
# goes to a stub libcuda.so.1 made here from the names cudarc declares; at run time the GPU
# machine's real driver is loaded in its place. Kernels are built for compute capability
# ${CUDA_COMPUTE_CAP:-90} (Hopper). A lab with a system CUDA toolkit needs none of this:
# `CUDA_COMPUTE_CAP=90 cargo build --release --features cuda` with nvcc on the PATH.
#
# The build goes to target/cuda/target so it does not evict the CPU build; the binary is
# target/cuda/target/release/personas, and stripped and xz-compressed target/cuda/personas.xz
# (what scripts/gpu-check carries). Set CUDA_BUILD_JOBS to bound parallel nvcc work. The first
# build takes about 20 minutes on 2 cores (candle's CUDA kernels), later ones a few.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-build}
case "$action" in build | check) ;; *) echo "usage: $0 [build|check]" >&2; exit 2 ;; esac

dest=$root/target/cuda
home=$dest/wheels/nvidia/cu13
stamp=$dest/toolkit-13.0.ok
if [ ! -f "$stamp" ]; then
    echo "installing the CUDA 13.0 toolkit wheels into $dest (about 1.2 GB)" >&2
    rm -rf "$dest/wheels"
    python3 -m pip install -q --disable-pip-version-check --target "$dest/wheels" \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 nvidia-cuda-nvrtc==13.0.88 \
        nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 \
        nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
    # The linker looks for unversioned names; the wheels ship only the versioned ones.
    for lib in "$home"/lib/lib*.so.[0-9]*; do
        base=$(basename "$lib")
        case "$base" in *builtins* | *.alt.*) continue ;; esac
        ln -sf "$base" "$home/lib/${base%%.so.*}.so"
    done
    # Driver stub: every cu* entry point cudarc can call, each answering CUDA_ERROR_UNKNOWN.
    cudarc=$(cd "$root" && cargo metadata --format-version 1 --features cuda 2>/dev/null |
        python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
    mkdir -p "$home/lib/stubs"
    grep -ohE 'pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | sort -u |
        sed -E 's/pub unsafe fn (.*)/int \1(void) { return 999; }/' > "$home/lib/stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/stubs/libcuda.so" "$home/lib/stubs/cuda_stub.c"
    ln -sf libcuda.so "$home/lib/stubs/libcuda.so.1"
    touch "$stamp"
fi

export CUDA_HOME=$home
export PATH=$home/bin:$PATH
export NVCC_APPEND_FLAGS="-I$home/include/cccl ${NVCC_APPEND_FLAGS:-}"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$home/lib:$home/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export CUDAFORGE_THREADS=${CUDA_BUILD_JOBS:-2}
export CARGO_TARGET_DIR=$root/target/cuda/target
# The binary is meant to be carried to a GPU machine, which may have no OpenBLAS (the CPU build
# links it when present): leave it out unless asked.
export PERSONAS_BLAS=${PERSONAS_BLAS:-0}
cd "$root"
cargo "$action" --release --features cuda --bin personas
if [ "$action" = build ]; then
    # Stripped and compressed for carrying (65 MB stripped, most of it GPU code; ~10 MB as xz).
    strip -o "$dest/personas" "$CARGO_TARGET_DIR/release/personas"
    xz -T0 -6 -f "$dest/personas"
    echo "built $CARGO_TARGET_DIR/release/personas and $dest/personas.xz (stripped; needs" \
        "libcuda.so.1, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 and" \
        "libcudart.so.13 at run time)" >&2
fi
