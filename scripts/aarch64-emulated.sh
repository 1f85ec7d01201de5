#!/usr/bin/env bash
# The aarch64 build, run under emulation (qemu-user with an explicit sysroot; no binfmt):
#   1. the library's unit tests and the pure integration tests (postprocess goldens, RLE,
#      schema, preprocess, layers) for aarch64;
#   2. `segstream run` on the first AARCH64_FRAMES frames of the sample (default 6) with ONNX
#      Runtime's aarch64 library (PyPI's onnxruntime aarch64 wheel, fetched with
#      `pip download --platform`), compared with the x86-64 run of the same tree
#      (scripts/compare-records.py: same segments, masks >= 99.9 % equal pixels).
# Called by `make aarch64-emulated` (after `make cross-aarch64`), which passes AARCH64_ENV.
# Prints a short table; the figures go into docs/BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-python3}
TARGET=aarch64-unknown-linux-gnu
# Frames of the sample compared: emulated inference takes about a minute a frame here.
FRAMES=${AARCH64_FRAMES:-6}
OUT=out/aarch64
mkdir -p "$OUT" .cross/ort
: "${AARCH64_ENV:?run through make aarch64-emulated}"  # for the aarch64 cargo only, never the host's

# ONNX Runtime for aarch64: the same version as the x86-64 library in use.
ORT_VERSION=$($PYTHON -c 'import onnxruntime; print(onnxruntime.__version__)')
ORT_ARM=.cross/ort/libonnxruntime.so
if [ ! -f "$ORT_ARM" ] || [ "$(cat .cross/ort/VERSION 2>/dev/null)" != "$ORT_VERSION" ]; then
    rm -rf .cross/wheel && mkdir -p .cross/wheel
    $PYTHON -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
        --python-version 3.11 --implementation cp -d .cross/wheel "onnxruntime==$ORT_VERSION"
    whl=$(ls .cross/wheel/onnxruntime-*.whl)
    lib=$(unzip -Z1 "$whl" | grep -E 'capi/libonnxruntime\.so\.[0-9.]+$' | head -n 1)
    unzip -p "$whl" "$lib" > "$ORT_ARM"
    echo "$ORT_VERSION" > .cross/ort/VERSION
fi
file -L "$ORT_ARM" | grep -q aarch64 || { echo "error: $ORT_ARM is not an aarch64 library" >&2; exit 1; }

# GStreamer's aarch64 plugins, scanned in-process (the scanner is an aarch64 program too and
# qemu-user does not follow exec without binfmt), with a registry of their own: only the
# plugins the run uses (scanning all of them under emulation takes many minutes).
rm -rf .cross/plugins && mkdir -p .cross/plugins
for p in coreelements app playback typefindfunctions isomp4 videoparsersbad libav videoconvertscale; do
    ln -s /usr/lib/aarch64-linux-gnu/gstreamer-1.0/libgst$p.so .cross/plugins/
done
export GST_PLUGIN_SYSTEM_PATH="$PWD/.cross/plugins" GST_PLUGIN_PATH= GST_REGISTRY_FORK=no \
    GST_REGISTRY="$PWD/$OUT/registry-arm64.bin"

# 1. Tests under qemu (cargo uses the runner in AARCH64_ENV).
t0=$(date +%s)
set +e
eval "env $AARCH64_ENV $CARGO test --no-fail-fast --target $TARGET --lib --test postprocess_golden --test rle \
    --test schema --test preprocess --test layers -- --test-threads=2" 2>&1 | tee "$OUT/tests.log" | grep -E '^test result|FAILED|panicked'
tests_rc=${PIPESTATUS[0]}
set -e
t1=$(date +%s)

# 2. The sample through the aarch64 command, and through the x86-64 one.
BIN_ARM=target/$TARGET/debug/segstream
[ -x "$BIN_ARM" ] || { echo "error: $BIN_ARM not built (make cross-aarch64)" >&2; exit 1; }
env -u GST_PLUGIN_SYSTEM_PATH -u GST_REGISTRY -u GST_REGISTRY_FORK $CARGO build -q --bin segstream
arm_env=(env ORT_DYLIB_PATH="$PWD/$ORT_ARM")
t2=$(date +%s)
# Bounded: an emulated run that stops making progress (as it did before commit 37f5722, when
# two glibc loaders were mixed) must not hang the script.
set +e
"${arm_env[@]}" timeout "${AARCH64_RUN_LIMIT:-1800}" qemu-aarch64 -L "$PWD/.cross/qemu-root" -E LD_LIBRARY_PATH="$PWD/.cross/dev/usr/lib/aarch64-linux-gnu" "$BIN_ARM" run samples/shapes.mp4 --no-overlay --threads 2 --timeout 600 --max-frames "$FRAMES" \
    --json "$OUT/shapes-aarch64.jsonl" 2>&1 | tail -n 5 | tee "$OUT/run-aarch64.log"
run_rc=${PIPESTATUS[0]}
set -e
t3=$(date +%s)
[ "$run_rc" = 0 ] || echo "| emulated sample run | failed (rc $run_rc) after $((t3 - t2)) s |"
env -u GST_PLUGIN_SYSTEM_PATH -u GST_REGISTRY -u GST_REGISTRY_FORK \
    ORT_DYLIB_PATH="$PWD/.ort/lib/libonnxruntime.so" target/debug/segstream run samples/shapes.mp4 --no-overlay \
    --threads 2 --max-frames "$FRAMES" --json "$OUT/shapes-x86_64.jsonl" > "$OUT/run-x86_64.log" 2>&1

set +e
$PYTHON scripts/compare-records.py "$OUT/shapes-x86_64.jsonl" "$OUT/shapes-aarch64.jsonl"
cmp_rc=$?
set -e
echo "| emulated tests | rc $tests_rc, $((t1 - t0)) s |"
echo "| emulated sample run | $((t3 - t2)) s |"
echo "| machine | $(uname -m), $(nproc) cores, qemu $(qemu-aarch64 --version | head -n 1 | awk '{print $3}'), $(date -u +%F) |"
exit $((tests_rc || cmp_rc))
