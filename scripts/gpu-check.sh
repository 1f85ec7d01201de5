#!/usr/bin/env bash
# One-shot GPU check on an NVIDIA machine (H100/H200, driver + CUDA 13 runtime libraries,
# no Rust needed), from the folder scripts/gpu-pack.sh assembled:
#
#   bash .gpu/gpu-check.sh            # from the repository root (device tool: carry ".gpu")
#
# 1. finds libnvrtc (CUDA toolkit, or the nvidia/cu13/lib folder of a PyTorch venv's
#    site-packages) and puts it on LD_LIBRARY_PATH (libcuda comes with the driver);
# 2. runs the CPU↔GPU equivalence tests (tests/cuda.rs) with --ignored: here a missing
#    device is a failure;
# 3. runs the stage benchmark (1920×1080 NV12, Q=100, K=133, CUDA events, median of 200
#    runs after 20 warm-up runs);
# 4. if Python with torch + transformers is there, times transformers'
#    post_process_panoptic_segmentation on the same GPU for the ≥ 20× comparison;
# 5. with the GStreamer bundle (.gpu/gst): lists nvcodec's elements and, when nvh264dec
#    registered, runs samples/shapes.mp4 → nvh264dec → mask2former → segoverlay on CUDA memory;
# 6. prints a short summary. Logs go to $OUT (or .gpu/out when OUT is unset).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LOGS=${OUT:-$HERE/out}
mkdir -p "$LOGS"
TIMEOUT=${GPU_CHECK_TIMEOUT:-240}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$LOGS/device.txt" || true

# NVRTC: a toolkit first, then any Python's site-packages (PyTorch's nvidia-* wheels).
nvrtc_dir=""
for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then nvrtc_dir=$d; break; fi
done
if [ -z "$nvrtc_dir" ]; then
  for py in python3 /opt/*/bin/python3 /usr/local/bin/python3 "$HOME"/.venv/bin/python3 /venv/bin/python3 /opt/venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
    nvrtc_dir=$("$py" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
for pattern in ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cu12/lib"):
    for r in roots:
        d = os.path.join(r, pattern)
        if glob.glob(os.path.join(d, "libnvrtc.so*")):
            print(d); raise SystemExit
PY
)
    [ -n "$nvrtc_dir" ] && break
  done
fi
if [ -z "$nvrtc_dir" ]; then
  nvrtc_dir=$(dirname "$(find / -name 'libnvrtc.so.1[23]*' -not -path '*/proc/*' 2>/dev/null | head -n1)" 2>/dev/null || true)
fi
echo "== NVRTC: ${nvrtc_dir:-not found}"
[ -n "$nvrtc_dir" ] && export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cudarc looks for libnvrtc.so.13 / .12; add the plain name too when only a versioned file exists.
if [ -n "$nvrtc_dir" ] && ! ls "$nvrtc_dir"/libnvrtc.so.1[23] >/dev/null 2>&1; then
  f=$(ls "$nvrtc_dir"/libnvrtc.so.* | head -n1); mkdir -p "$LOGS/lib"; ln -sf "$f" "$LOGS/lib/libnvrtc.so.13"
  export LD_LIBRARY_PATH="$LOGS/lib:$LD_LIBRARY_PATH"
fi

# Libraries gpu-pack.sh copied (GLib / GStreamer when linked), after the system's.
[ -d "$HERE/lib" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$HERE/lib"
# gpu-pack.sh keeps the libraries that the GStreamer bundle also has only in gst/lib.
[ -d "$HERE/gst/lib" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$HERE/gst/lib"

# The test and bench binaries travel xz-compressed: unpack them (the system's xz, else the
# bundle's).
BIN=$LOGS/bin; mkdir -p "$BIN"
XZ=$(command -v xz || echo "$HERE/gst/bin/xz")
for b in cuda-tests cuda-bench; do
  if [ -f "$HERE/bin/$b.xz" ]; then
    env LD_LIBRARY_PATH="$HERE/gst/lib:${LD_LIBRARY_PATH:-}" "$XZ" -dc "$HERE/bin/$b.xz" > "$BIN/$b" && chmod +x "$BIN/$b"
  elif [ -f "$HERE/bin/$b" ]; then
    cp "$HERE/bin/$b" "$BIN/$b"
  fi
done

status=0
echo "== equivalence tests (tests/cuda.rs --ignored)"
timeout "$TIMEOUT" "$BIN/cuda-tests" --include-ignored --test-threads=1 --nocapture 2>&1 | tee "$LOGS/tests.log"
t_rc=${PIPESTATUS[0]}; [ "$t_rc" -ne 0 ] && status=1

echo "== stage benchmark"
timeout "$TIMEOUT" "$BIN/cuda-bench" --runs 200 --warmup 20 2>&1 | tee "$LOGS/bench.txt"
b_rc=${PIPESTATUS[0]}; [ "$b_rc" -ne 0 ] && status=1

echo "== transformers baseline (optional)"
tf_ms=""
for py in python3 /opt/*/bin/python3 /venv/bin/python3 /opt/venv/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
  if "$py" -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 180 "$py" "$HERE/transformers_baseline.py" 2>&1 | tee "$LOGS/transformers.txt"
    tf_ms=$(grep -oP 'median_ms=\K[0-9.]+' "$LOGS/transformers.txt" | tail -n1)
    break
  fi
done
[ -z "$tf_ms" ] && echo "(no Python with torch + transformers + CUDA: skipped)"

# The GStreamer bundle (.gpu/gst, scripts/gst-bundle.sh): nvcodec's elements, then
#    sample.mp4 → nvh264dec → mask2former → segoverlay (CUDA memory) → cudadownload → fakesink,
#    with mask2former's cuda-frames / cuda-copied counts.
#    Bounded by GPU_CHECK_GST_TIMEOUT (default 180 s) for the pipeline, 60 s per inspection.
echo "== GStreamer bundle: nvcodec + mask2former pipeline"
GST_TIMEOUT=${GPU_CHECK_GST_TIMEOUT:-180}
gst_summary=() g_rc=""
if [ ! -x "$HERE/gst/env.sh" ]; then
  gst_summary+=("gstreamer: skipped, no $HERE/gst/env.sh (scripts/gpu-pack.sh makes it)")
else
  timeout 60 "$HERE/gst/env.sh" gst-inspect-1.0 nvcodec > "$LOGS/gst-nvcodec.txt" 2>&1
  n_rc=$?
  sed 's/^/  /' "$LOGS/gst-nvcodec.txt" | grep -E 'features|^  +[a-z0-9]+: ' | head -n 40
  n_feat=$(grep -oE '^ *[0-9]+ features' "$LOGS/gst-nvcodec.txt" | grep -oE '[0-9]+' || echo "?")
  nv_elems=$(grep -oE '^ *nv[a-z0-9]+(dec|enc)[a-z0-9]*:' "$LOGS/gst-nvcodec.txt" | tr -d ' :' | tr '\n' ' ')
  gst_summary+=("gstreamer nvcodec: rc=$n_rc, $n_feat features; decoders/encoders: ${nv_elems:-none}")
  model=$HERE/samples/models/shapes-m2f.onnx video=$HERE/samples/shapes.mp4
  if ! grep -qE '^ *nvh264dec:' "$LOGS/gst-nvcodec.txt"; then
    # Why: the driver's libraries, and nvcodec's own log of its device probe.
    libs=$(ldconfig -p 2>/dev/null | grep -oE 'lib(cuda|nvcuvid)\.so\.1' | sort -u | tr '\n' ' ')
    timeout 60 env GST_DEBUG='nv*:5,cuda*:5' "$HERE/gst/env.sh" gst-inspect-1.0 nvcodec > "$LOGS/gst-nvcodec-debug.txt" 2>&1
    why=$(grep -E 'WARN|ERROR|[Ff]ail|not' "$LOGS/gst-nvcodec-debug.txt" | sed -E 's/\x1b\[[0-9;]*m//g; s/^.*(WARN|ERROR|INFO|DEBUG|LOG) +//' | head -n 2 | tr '\n' ';')
    gst_summary+=("gstreamer pipeline: not run, nvh264dec is not registered (driver libraries seen by ldconfig: ${libs:-neither libcuda.so.1 nor libnvcuvid.so.1}; nvcodec says: ${why:-nothing, see gst-nvcodec-debug.txt})")
  elif [ ! -f "$model" ]; then
    gst_summary+=("gstreamer pipeline: not run, no sample model in $HERE/samples/models (left out by gpu-pack.sh?)")
  else
    if [ ! -f "$video" ]; then   # not packed: make an H.264 test video with the bundle
      video=$LOGS/test.mp4
      timeout 120 "$HERE/gst/env.sh" gst-launch-1.0 -q videotestsrc num-buffers=180 pattern=ball \
        ! video/x-raw,width=640,height=360,framerate=30/1 ! x264enc ! mp4mux ! filesink location="$video" > "$LOGS/gst-testvideo.log" 2>&1
    fi
    timeout "$GST_TIMEOUT" "$HERE/gst/env.sh" gst-launch-1.0 -m filesrc location="$video" ! qtdemux ! h264parse \
      ! nvh264dec ! mask2former model="$model" ! segoverlay ! cudadownload ! videoconvert ! fakesink > "$LOGS/gst-pipeline.log" 2>&1
    g_rc=$?
    frames=$(grep -oE 'segstream-summary, frames=\(guint64\)[0-9]+' "$LOGS/gst-pipeline.log" | grep -oE '[0-9]+$' | tail -n1)
    on_dev=$(grep -oE 'cuda-frames=\(guint64\)[0-9]+' "$LOGS/gst-pipeline.log" | grep -oE '[0-9]+$' | tail -n1)
    copied=$(grep -oE 'cuda-copied=\(guint64\)[0-9]+' "$LOGS/gst-pipeline.log" | grep -oE '[0-9]+$' | tail -n1)
    took=$(grep -oE 'Execution ended after [0-9:.]+' "$LOGS/gst-pipeline.log" | awk '{print $4}' | sed -E 's/(\.[0-9]{3})[0-9]*/\1/')
    last=$(grep -E 'ERROR|WARNING' "$LOGS/gst-pipeline.log" | head -n1)
    gst_summary+=("gstreamer pipeline nvh264dec → mask2former → segoverlay (CUDA memory): rc=$g_rc, ${frames:-?} frames in ${took:-?}, on the device ${on_dev:-?}, copied ${copied:-?}${last:+; $last}")
    [ "$g_rc" -ne 0 ] && status=1
  fi
fi
printf '  %s\n' "${gst_summary[@]}"

echo
echo "== summary"
grep -E '^test .* \.\.\. ' "$LOGS/tests.log" | sed 's/^/  /'
grep -E '^test result:' "$LOGS/tests.log" | sed 's/^/  /'
sed -n '1,20p' "$LOGS/bench.txt" | sed 's/^/  /'
ours=$(grep -E '^panoptic .* cuda ' "$LOGS/bench.txt" | awk '{for (i=1;i<=NF;i++) if ($i=="cuda") {print $(i+1); exit}}')
if [ -n "$tf_ms" ] && [ -n "$ours" ]; then
  python3 -c "o=$ours; t=$tf_ms; print(f'  transformers post_process_panoptic_segmentation: {t:.3f} ms; segstream panoptic: {o:.4f} ms; speed-up {t/o:.1f}x (target >= 20x)')"
fi
printf '  %s\n' "${gst_summary[@]}"
echo "  tests rc=$t_rc bench rc=$b_rc${g_rc:+ gst pipeline rc=$g_rc}; logs in $LOGS"
exit $status
