#!/usr/bin/env bash
# Build the CUDA path here (no GPU or CUDA toolkit needed) and assemble the folder that
# scripts/gpu-check.sh runs on an NVIDIA machine (no GStreamer, Rust or network there):
#
#   scripts/gpu-pack.sh                         # → .gpu/ (ignored by git), < 64 MiB
#   GPU_PACK_SKIP_BUILD=1 scripts/gpu-pack.sh   # no cargo: reuse what is built (see below)
#   (copy .gpu/ to the GPU machine, then)  bash .gpu/gpu-check.sh
#   scripts/gpu-bundle-check.sh                 # here: the GStreamer part runs on its own
#
# .gpu/bin/cuda-tests.xz   tests/cuda.rs (CPU↔GPU equivalence), run with --ignored there
# .gpu/bin/cuda-bench.xz   examples/cuda_bench.rs (CUDA-event stage timings)
#                          (xz-compressed; gpu-check.sh unpacks them)
# .gpu/gst/             GStreamer 1.22 runtime (scripts/gst-bundle.sh; env.sh is its launcher)
# .gpu/gst/segstream/   libgstsegstream.so (cargo build --release -p gst-segstream, with
#                       --features cuda when that crate has such a feature)
# .gpu/gst/ort/         libonnxruntime.so.xz (+ key): env.sh unpacks it once to $TMPDIR
#                       and sets ORT_DYLIB_PATH (34 MB unpacked: too big to carry as is)
# .gpu/samples/         the sample video, model and model card, when they fit
# .gpu/gpu-check.sh, .gpu/gpu-bundle-check.sh, .gpu/transformers_baseline.py
# Binaries are stripped; their shared-library needs are listed in .gpu/ldd.txt.
#
# GPU_PACK_SKIP_BUILD=1 runs no cargo (for iterating on the bundle): the CUDA binaries are
# kept from an existing .gpu/bin (or left out, with a warning), the plugin comes from
# target/release (or, failing that, target/debug, with a warning). GPU_PACK_ORT=<path>
# overrides .ort/lib/libonnxruntime.so.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu
CARGO=${CARGO:-cargo}
LIMIT=$((64 * 1024 * 1024))
SKIP_BUILD=${GPU_PACK_SKIP_BUILD:-0}
[ "${1:-}" = --skip-build ] && SKIP_BUILD=1
ORT_LIB=${GPU_PACK_ORT:-.ort/lib/libonnxruntime.so}
warn() { echo "gpu-pack.sh: warning: $*" >&2; }
die() { echo "gpu-pack.sh: $*" >&2; exit 1; }

plugin_features=()
grep -qE '^cuda *=' plugins/gst-segstream/Cargo.toml && plugin_features=(--features cuda)
KEEP=$(mktemp -d); trap 'rm -rf "$KEEP"' EXIT
tests_exe="" bench_exe=""
if [ "$SKIP_BUILD" = 1 ]; then
  echo "== GPU_PACK_SKIP_BUILD=1: no cargo"
  if [ -f "$OUT/bin/cuda-tests.xz" ] && [ -f "$OUT/bin/cuda-bench.xz" ]; then
    xz -dc "$OUT/bin/cuda-tests.xz" > "$KEEP/cuda-tests" && xz -dc "$OUT/bin/cuda-bench.xz" > "$KEEP/cuda-bench"
    tests_exe=$KEEP/cuda-tests bench_exe=$KEEP/cuda-bench
  else
    warn "no .gpu/bin/cuda-tests + cuda-bench to reuse: they are left out (run without GPU_PACK_SKIP_BUILD to build them)"
  fi
  plugin=target/release/libgstsegstream.so
  if [ ! -f "$plugin" ]; then
    plugin=target/debug/libgstsegstream.so
    [ -f "$plugin" ] || die "no libgstsegstream.so in target/release or target/debug: cargo build --release -p gst-segstream"
    warn "using the DEBUG build $plugin (no target/release one): fine for checking the bundle, slow for timings"
  fi
else
  echo "== building (release, --features cuda)"
  $CARGO build --release --features cuda --example cuda_bench
  tests_exe=$($CARGO test --release --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "cuda" and m.get("executable"):
        print(m["executable"])' | tail -n1)
  [ -n "$tests_exe" ] || die "could not find the tests/cuda.rs executable"
  bench_exe=target/release/examples/cuda_bench
  echo "== building the plugin (release${plugin_features[*]:+, ${plugin_features[*]}})"
  $CARGO build --release -p gst-segstream "${plugin_features[@]}"
  plugin=target/release/libgstsegstream.so
fi

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
[ -n "$tests_exe" ] && cp "$tests_exe" "$OUT/bin/cuda-tests"
[ -n "$bench_exe" ] && cp "$bench_exe" "$OUT/bin/cuda-bench"
if compgen -G "$OUT/bin/*" >/dev/null; then
  strip --strip-debug "$OUT/bin/"* 2>/dev/null || echo "(strip not found: binaries keep their debug info)"
  chmod +x "$OUT/bin/"*
fi
cp scripts/gpu-check.sh scripts/gpu-bundle-check.sh scripts/transformers_baseline.py "$OUT/"
chmod +x "$OUT/gpu-check.sh" "$OUT/gpu-bundle-check.sh"
for b in "$OUT/bin/"*; do [ -f "$b" ] || continue; echo "== $b"; ldd "$b" || true; done > "$OUT/ldd.txt"
# Shared libraries beyond glibc the binaries link (GStreamer / GLib if the linker kept
# them) travel along in .gpu/lib, so the GPU machine needs no GStreamer install.
{ grep -oE '=> /[^ ]+' "$OUT/ldd.txt" || true; } | cut -c4- | sort -u |
  { grep -vE '/(libc|libm|libdl|librt|libpthread|libgcc_s|ld-linux[^/]*)\.so' || true; } |
  while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
# The binaries travel xz-compressed (12 → 1.4 MiB each: without that the sample model does
# not fit); gpu-check.sh unpacks them into its log folder.
for b in "$OUT/bin/"*; do [ -f "$b" ] && [ "${b%.xz}" = "$b" ] && xz -T2 -6 -f "$b"; done

# GStreamer runtime + our plugin + ONNX Runtime
echo "== GStreamer bundle"
mkdir -p "$OUT/gst/segstream" "$OUT/gst/ort"
cp "$plugin" "$OUT/gst/segstream/libgstsegstream.so"
strip --strip-unneeded "$OUT/gst/segstream/libgstsegstream.so" 2>/dev/null || warn "strip failed: the plugin keeps its debug info"
scripts/gst-bundle.sh "$OUT/gst" "$OUT/gst/segstream/libgstsegstream.so"
# The binaries' libraries that the bundle has too travel once, in gst/lib (gpu-check.sh
# puts it on LD_LIBRARY_PATH after lib/): same Debian 12 packages, same sonames.
dups=0
for l in "$OUT"/lib/*; do
  [ -f "$l" ] && [ -f "$OUT/gst/lib/${l##*/}" ] || continue
  rm "$l"; dups=$((dups + 1))
done
[ "$dups" -gt 0 ] && echo "== $dups libraries of the binaries are in gst/lib: not copied twice"
if [ -f "$ORT_LIB" ]; then
  key=$(sha256sum "$ORT_LIB" | cut -c1-16)
  xz_cache=.cache/ort/libonnxruntime-$key.so.xz
  if [ ! -f "$xz_cache" ]; then
    echo "== xz -T2 -6 $ORT_LIB (once; cached in .cache/ort)"
    mkdir -p .cache/ort
    xz -T2 -6 -c "$ORT_LIB" > "$xz_cache.tmp" && mv "$xz_cache.tmp" "$xz_cache"
  fi
  cp "$xz_cache" "$OUT/gst/ort/libonnxruntime.so.xz"
  echo "$key" > "$OUT/gst/ort/key"
else
  warn "$ORT_LIB not found (make setup, or GPU_PACK_ORT=<libonnxruntime.so>): mask2former will find no ONNX Runtime there"
fi

git rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null || true
git status --short >> "$OUT/commit.txt" 2>/dev/null || true

# Samples last, each only if it fits: the model and its card (needed by every pipeline
# check), then the video (gpu-check.sh makes a test video when it is missing).
bytes() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }
add_sample() { # files... (copied under $OUT/samples with their samples/ path)
  local f
  if [ $(( $(bytes "$OUT") + $(bytes "$@") )) -ge "$LIMIT" ]; then
    warn "$* ($(( $(bytes "$@") / 1024 )) KiB) would not fit under 64 MiB: left out"; return 0
  fi
  for f in "$@"; do mkdir -p "$OUT/$(dirname "$f")"; cp "$f" "$OUT/$f"; done
}
add_sample samples/models/shapes-m2f.onnx samples/models/shapes-m2f.json
add_sample samples/shapes.mp4

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "== sizes"
part() { [ -e "$2" ] && printf '  %-34s %s\n' "$1" "$(mib "$(bytes "$2")")"; return 0; }
part "bin/cuda-tests.xz" "$OUT/bin/cuda-tests.xz"
part "bin/cuda-bench.xz" "$OUT/bin/cuda-bench.xz"
part "lib/ (libraries of the binaries)" "$OUT/lib"
printf '  %-34s %s\n' "gst/ GStreamer runtime" "$(mib $(( $(bytes "$OUT/gst") - $(bytes "$OUT/gst/segstream" "$OUT/gst/ort") )))"
part "gst/segstream/libgstsegstream.so" "$OUT/gst/segstream/libgstsegstream.so"
part "gst/ort/libonnxruntime.so.xz" "$OUT/gst/ort/libonnxruntime.so.xz"
part "samples/" "$OUT/samples"
total=$(bytes "$OUT")
printf '  %-34s %s (limit 64 MiB)\n' "total $OUT" "$(mib "$total")"
if [ "$total" -ge "$LIMIT" ]; then die "$OUT is $(mib "$total"), over the 64 MiB a device run carries"; fi
# Libraries besides glibc / libgcc the binaries need (should be none: libcuda and
# libnvrtc are loaded at run time).
if grep -E 'not found' "$OUT/ldd.txt"; then echo "some libraries are missing here already" >&2; fi
echo "ready: copy $OUT to the GPU machine and run: bash $OUT/gpu-check.sh"
