#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-perplexity, llama-batched-bench,
# llama-bench) from the very llama.cpp source that the installed llama-cpp-python
# vendors, with the flags its wheel build uses, so that benchmarks compare locallama
# with llama.cpp on the same kernels.
#
#   scripts/build_llama_server.sh [PREFIX]     # default PREFIX: /work/llama-server-same
#
# Installs PREFIX/bin/{llama-server,llama-perplexity,llama-batched-bench,llama-bench}
# (statically linked against ggml/llama, so they need no library path) and touches
# PREFIX/READY when done.  Needs: cmake >= 3.21 and a C/C++ compiler (apt-get install
# cmake build-essential, or `pip install cmake` for cmake alone), and either network
# access to PyPI or pip's cache holding the llama-cpp-python sdist.  Takes about
# 25 minutes on 2 busy cores; run it under `nice`.
#
# Flags, as llama-cpp-python's CMakeLists.txt / scikit-build-core build it on Linux:
# Release, GGML_NATIVE=ON (the llama.cpp default when not cross-compiling), LLAMA_CURL
# off.  The server's web UI is not fetched (no network at build time) and HTTPS is off.
# Override the version with LLAMA_CPP_PYTHON_VERSION, the job count with JOBS.
set -euo pipefail

PREFIX=${1:-/work/llama-server-same}
PYTHON=${PYTHON:-python3}
if [[ -z "${LLAMA_CPP_PYTHON_VERSION:-}" ]]; then
    LLAMA_CPP_PYTHON_VERSION=$("$PYTHON" -c \
        'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null \
        || echo 0.3.36)
fi
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
WORK=${WORK:-$(mktemp -d)}
echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION -> $PREFIX/bin (work dir $WORK)"

command -v cmake >/dev/null || { echo "error: cmake is needed (apt-get install cmake)" >&2; exit 1; }

cd "$WORK"
sdist=$(ls llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz 2>/dev/null || true)
if [[ -z "$sdist" ]]; then
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$WORK"
    sdist=llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz
fi
[[ -d llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION" ]] || tar xzf "$sdist"
SRC="$WORK/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"

cmake -S "$SRC" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_APP=OFF
cmake --build "$WORK/build" --config Release -j "$JOBS" \
    --target llama-server llama-perplexity llama-batched-bench llama-bench

mkdir -p "$PREFIX/bin"
for t in llama-server llama-perplexity llama-batched-bench llama-bench; do
    install -m 755 "$WORK/build/bin/$t" "$PREFIX/bin/$t"
done
echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION" > "$PREFIX/VERSION"
touch "$PREFIX/READY"
echo "built: $(ls "$PREFIX/bin" | tr '\n' ' ')"
