#!/usr/bin/env bash
# Build llama.cpp's own command-line tools (the copy vendored in llama-cpp-python 0.3.36, the
# version scripts/compare_llamacpp.py measures against) for benchmarks and model making.
#
# Usage, from anywhere (paths are relative to the repository root):
#
#     scripts/build_llamacpp.sh            # build if missing, else do nothing
#     scripts/build_llamacpp.sh --force    # rebuild the tools
#
# Result: target/llamacpp/bin/{llama-quantize,llama-bench,llama-batched-bench,llama-simple,
#         llama-completion,llama-tokenize}  (copies of the binaries from target/llamacpp/build/bin)
#
# Steps:
#   1. pip download the llama-cpp-python==0.3.36 sdist into target/llamacpp/src (no wheel exists
#      on PyPI anyway; `--no-binary llama-cpp-python` rather than `:all:` so that pip's metadata
#      step does not compile cmake/ninja from source) and unpack it there. The vendored llama.cpp
#      is target/llamacpp/src/llama_cpp_python-0.3.36/vendor/llama.cpp, and its gguf-py is what
#      scripts/make_models.py imports.
#   2. cmake configure into target/llamacpp/build: Release, GGML_NATIVE=ON (tuned for this CPU:
#      the binaries may not run on another CPU), static libraries, no CURL/OpenSSL, no server/UI/
#      tests, then build only the tool targets above.
#
# AMX: on CPUs that report AMX (Sapphire Rapids and later) -march=native turns on ggml's AMX
# matmul path, and on this project's VMs that path dies (SIGSEGV, a #GP on `ldtilecfg` in
# ggml_backend_amx_mul_mat) at the first matmul of a type it takes (Q4_0, Q4_1, Q8_0, the k-quants
# of the models here...; F16/BF16 are unaffected), though AMX itself works there. So the build adds
# -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 (the rest of -march=native, AVX-512 included, stays).
# LLAMACPP_AMX=1 keeps AMX. The cmake arguments are recorded in target/llamacpp/bin/.build-args;
# when they change (or with --force) the tools are reconfigured and rebuilt.
#
# Needs a C/C++ compiler and cmake >= 3.14 (installed with apt-get, or pip as a fallback, if
# missing). Parallelism: $JOBS (default 2). Took 17-28 minutes on 2 cores shared
# with other builds.
# `llama-cli` needs the server/UI part of the build in this llama.cpp version; `llama-completion`
# is the old llama-cli (text completion) and `llama-simple` the minimal greedy generator.
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=0.3.36
SRC_DIR=target/llamacpp/src
SDIST_DIR="$SRC_DIR/llama_cpp_python-$VERSION"
LLAMA_DIR="$SDIST_DIR/vendor/llama.cpp"
BUILD_DIR=target/llamacpp/build
BIN_DIR=target/llamacpp/bin
JOBS=${JOBS:-2}
# LLAMACPP_TOOLS (space separated) builds fewer: scripts/test needs only llama-quantize.
read -r -a TOOLS <<< "${LLAMACPP_TOOLS:-llama-quantize llama-bench llama-batched-bench llama-simple llama-completion llama-tokenize}"

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; fi

CMAKE_ARGS_LIST=(
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_NATIVE=ON
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_EXAMPLES=ON
)
if [[ "${LLAMACPP_AMX:-0}" != 1 ]] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS_LIST+=("-DCMAKE_C_FLAGS=$NO_AMX" "-DCMAKE_CXX_FLAGS=$NO_AMX")
fi
ARGS_STAMP="${CMAKE_ARGS_LIST[*]}"

all_built=1
for t in "${TOOLS[@]}"; do
    [[ -x "$BIN_DIR/$t" ]] || all_built=0
done
if [[ "$(cat "$BIN_DIR/.build-args" 2>/dev/null)" != "$ARGS_STAMP" ]]; then
    all_built=0
fi
if [[ $all_built == 1 && $force == 0 ]]; then
    echo "llama.cpp tools already built in $BIN_DIR (use --force to rebuild)"
    exit 0
fi

# --- cmake
if ! command -v cmake >/dev/null 2>&1; then
    echo "cmake not found: installing it" >&2
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq cmake
    else
        python3 -m pip install --user cmake
        export PATH="$HOME/.local/bin:$PATH"
    fi
fi

# --- sources
if [[ ! -f "$LLAMA_DIR/CMakeLists.txt" ]]; then
    mkdir -p "$SRC_DIR"
    sdist="$SRC_DIR/llama_cpp_python-$VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        python3 -m pip download --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$VERSION" -d "$SRC_DIR"
    fi
    tar -xzf "$sdist" -C "$SRC_DIR"
fi

# --- configure and build
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
start=$(date +%s)
if [[ $force == 1 || ! -f "$BUILD_DIR/CMakeCache.txt" ||
      "$(cat "$BIN_DIR/.build-args" 2>/dev/null)" != "$ARGS_STAMP" ]]; then
    rm -rf "$BUILD_DIR"
    cmake -S "$LLAMA_DIR" -B "$BUILD_DIR" "${generator[@]}" "${CMAKE_ARGS_LIST[@]}"
fi
cmake --build "$BUILD_DIR" --config Release -j "$JOBS" --target "${TOOLS[@]}"

mkdir -p "$BIN_DIR"
for t in "${TOOLS[@]}"; do
    # copy then rename: works while an older copy of the tool is running
    cp -f "$BUILD_DIR/bin/$t" "$BIN_DIR/$t.tmp"
    mv -f "$BIN_DIR/$t.tmp" "$BIN_DIR/$t"
done
echo "$ARGS_STAMP" > "$BIN_DIR/.build-args"
echo "built in $(( $(date +%s) - start )) s: $BIN_DIR/{$(IFS=,; echo "${TOOLS[*]}")}"
for t in "${TOOLS[@]}"; do
    [[ -x "$BIN_DIR/$t" ]] || { echo "error: $BIN_DIR/$t was not built" >&2; exit 1; }
done
