#!/usr/bin/env bash
# Prepare a CPU-only Triton Inference Server for the tests, under .triton/ (git-ignored):
#   .triton/server/   tritonserver, its libraries (lib/), the Python backend with the stub
#                     for Debian's Python 3.11, the local cache
#   .triton/venv/     a venv of /usr/bin/python3 with onnxruntime, used by the Python models
# The server comes from PyPI's nvidia-pytriton wheel (it bundles tritonserver); the wheel is
# unpacked, never installed. Idempotent: does nothing but print the paths when all is there.
#
# Usage: scripts/triton-setup.sh [--force]
set -euo pipefail

PYTRITON_VERSION=0.7.0
ORT_VERSION=1.32.0
# numpy 1.x: the stub's bindings misread numpy 2 arrays ("output tensor shape does not
# match size of output").
NUMPY_VERSION=1.26.4

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T="$ROOT/.triton"
SERVER="$T/server"
VENV="$T/venv"
PY=/usr/bin/python3   # the stub embeds Debian's libpython3.11: the models run on this Python

log() { printf 'triton-setup: %s\n' "$*" >&2; }

if [ "${1:-}" = "--force" ]; then
    rm -rf "$SERVER" "$VENV"
fi

# The Python minor version the stub must match (Debian 12: 3.11).
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

server_ok() {
    [ -x "$SERVER/bin/tritonserver" ] &&
        [ -x "$SERVER/backends/python/triton_python_backend_stub" ] &&
        [ -f "$SERVER/backends/python/libtriton_python.so" ] &&
        [ "$(cat "$SERVER/VERSION" 2>/dev/null)" = "nvidia-pytriton $PYTRITON_VERSION python $PYVER" ]
}
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        [ "$(cat "$VENV/VERSION" 2>/dev/null)" = "onnxruntime $ORT_VERSION numpy $NUMPY_VERSION" ]
}

report() {
    echo "tritonserver:   $SERVER/bin/tritonserver (nvidia-pytriton $PYTRITON_VERSION)"
    echo "libraries:      $SERVER/lib (LD_LIBRARY_PATH)"
    echo "backends:       $SERVER/backends (python, stub for Python $PYVER)"
    echo "model Python:   $PY + $VENV (onnxruntime $ORT_VERSION, numpy $NUMPY_VERSION)"
    echo "serve a model:  scripts/triton-serve.sh MODEL.onnx REPO_DIR --name NAME"
}

if server_ok && venv_ok; then
    report
    exit 0
fi

mkdir -p "$T"

# Debian packages: the venv module (and its pip wheel) for /usr/bin/python3, and the
# shared libpython the stub links against.
missing=()
"$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -e /usr/lib/x86_64-linux-gnu/libpython$PYVER.so.1.0 ] || missing+=("libpython$PYVER")
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root for apt-get (or install ${missing[*]} yourself)"
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

# The venv: onnxruntime and numpy for the Python models and for the stub's own
# triton_python_backend_utils (the generated model.py puts this venv's site-packages first
# on sys.path; the stub runs Python isolated, so PYTHONPATH would not do).
if ! venv_ok; then
    log "creating $VENV (onnxruntime $ORT_VERSION, numpy $NUMPY_VERSION)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" >&2
    "$VENV/bin/python" -c 'import onnxruntime, numpy'
    echo "onnxruntime $ORT_VERSION numpy $NUMPY_VERSION" >"$VENV/VERSION"
fi

# The server: download the wheel (no dependencies), unpack it, and lay out
# bin/ lib/ backends/ caches/ under .triton/server.
if ! server_ok; then
    work="$T/unpack"
    rm -rf "$work" "$SERVER.partial"
    mkdir -p "$work"
    log "downloading nvidia-pytriton $PYTRITON_VERSION"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        -d "$work" "nvidia-pytriton==$PYTRITON_VERSION" >&2
    wheel="$(ls "$work"/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl)"
    log "unpacking $(basename "$wheel")"
    "$VENV/bin/python" -m zipfile -e "$wheel" "$work/x"
    ts="$work/x/pytriton/tritonserver"
    stub="$ts/python_backend_stubs/$PYVER/triton_python_backend_stub"
    if [ ! -f "$stub" ]; then
        log "the wheel has no Python backend stub for Python $PYVER"
        exit 1
    fi
    mkdir -p "$SERVER.partial"
    mv "$ts/bin" "$ts/backends" "$ts/caches" "$SERVER.partial/"
    mv "$work/x/nvidia_pytriton.libs" "$SERVER.partial/lib"
    cp "$stub" "$SERVER.partial/backends/python/triton_python_backend_stub"
    chmod +x "$SERVER.partial/bin/tritonserver" "$SERVER.partial/backends/python/triton_python_backend_stub"
    echo "nvidia-pytriton $PYTRITON_VERSION python $PYVER" >"$SERVER.partial/VERSION"
    rm -rf "$SERVER"
    mv "$SERVER.partial" "$SERVER"
    rm -rf "$work"
fi

report
