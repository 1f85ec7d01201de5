#!/usr/bin/env bash
# Build the CUDA path here (no GPU or CUDA toolkit needed) and assemble the folder that
# scripts/gpu-check.sh runs on an NVIDIA machine:
#
#   scripts/gpu-pack.sh            # → .gpu/ (ignored by git), < 64 MiB
#   (copy .gpu/ to the GPU machine, then)  bash .gpu/gpu-check.sh
#
# .gpu/bin/cuda-tests   tests/cuda.rs (CPU↔GPU equivalence), run with --ignored there
# .gpu/bin/cuda-bench   examples/cuda_bench.rs (CUDA-event stage timings)
# .gpu/gpu-check.sh, .gpu/transformers_baseline.py
# Binaries are stripped; their shared-library needs are listed in .gpu/ldd.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu
CARGO=${CARGO:-cargo}

echo "== building (release, --features cuda)"
$CARGO build --release --features cuda --example cuda_bench
tests_exe=$($CARGO test --release --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "cuda" and m.get("executable"):
        print(m["executable"])' | tail -n1)
if [ -z "$tests_exe" ]; then echo "could not find the tests/cuda.rs executable" >&2; exit 1; fi

rm -rf "$OUT"
mkdir -p "$OUT/bin"
cp "$tests_exe" "$OUT/bin/cuda-tests"
cp target/release/examples/cuda_bench "$OUT/bin/cuda-bench"
strip --strip-debug "$OUT/bin/"* 2>/dev/null || echo "(strip not found: binaries keep their debug info)"
cp scripts/gpu-check.sh scripts/transformers_baseline.py "$OUT/"
chmod +x "$OUT/gpu-check.sh" "$OUT/bin/"*
for b in "$OUT/bin/"*; do echo "== $b"; ldd "$b" || true; done > "$OUT/ldd.txt"
# Shared libraries beyond glibc the binaries link (GStreamer / GLib if the linker kept
# them) travel along in .gpu/lib, so the GPU machine needs no GStreamer install.
mkdir -p "$OUT/lib"
grep -oE '=> /[^ ]+' "$OUT/ldd.txt" | cut -c4- | sort -u |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libgcc_s|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
git rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null || true
git status --short >> "$OUT/commit.txt" 2>/dev/null || true

size=$(du -sm "$OUT" | cut -f1)
echo "== $OUT: ${size} MiB"
du -sh "$OUT"/bin/* "$OUT"
if [ "$size" -ge 64 ]; then echo "$OUT is ${size} MiB, over the 64 MiB a device run carries" >&2; exit 1; fi
# Libraries besides glibc / libgcc the binaries need (should be none: libcuda and
# libnvrtc are loaded at run time).
if grep -E 'not found' "$OUT/ldd.txt"; then echo "some libraries are missing here already" >&2; fi
echo "ready: copy $OUT to the GPU machine and run: bash $OUT/gpu-check.sh"
