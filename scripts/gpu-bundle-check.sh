#!/usr/bin/env bash
# Prove that the GStreamer bundle (scripts/gst-bundle.sh, .gpu/gst/ from scripts/gpu-pack.sh)
# runs on its own, as on a bare GPU machine:
#
#   scripts/gpu-bundle-check.sh [<bundle dir>]        # default .gpu/gst; MODEL=<x.onnx> to override
#   bash .gpu/gpu-bundle-check.sh                     # the packed copy: .gpu/gst beside it
#
# Every command runs under `env -i` with only the bundle's env.sh (HOME=/tmp,
# PATH=/usr/bin:/bin for coreutils):
#   a) gst-inspect-1.0 mask2former
#   b) videotestsrc num-buffers=10 ! 320x240 ! videoconvert ! mask2former model=<sample>
#      ! segoverlay ! videoconvert ! x264enc ! mp4mux ! filesink  (a non-empty .mp4)
#   c) gst-inspect-1.0 nvcodec  (loads; its elements register only where a GPU is)
#   d) static closure: every DT_NEEDED of bin/, plugins/, segstream/ and lib/ is in lib/
#      or is glibc / libgcc_s / libstdc++ / an NVIDIA driver library
#   e) audit: LD_DEBUG=libs of every process of a)-c) (the plugin scanner included) lists
#      no object outside the bundle but those system ones
# Isolation: as root with `unshare`, a)-c) run in a private mount namespace in which
# /usr/lib/x86_64-linux-gnu holds only glibc, libgcc_s, libstdc++, libtinfo (for bash) and
# NVIDIA driver libraries, so the system's GStreamer, GLib, plugins and GIO modules cannot
# be picked up; a missing library is then a failure, not a silent fallback. Otherwise
# (GPU_BUNDLE_CHECK_ISOLATE=0, or no root) only the audit e) guards against that.
# Logs are kept in a folder under /tmp (printed). Exit status 0 when all passed.
set -euo pipefail

MULTIARCH=x86_64-linux-gnu
SYS=/usr/lib/$MULTIARCH
# System libraries the bundle may use (basename globs): glibc, the GCC runtime, bash's
# libtinfo, the NVIDIA driver.
ALLOWED=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 librt.so.1 libpthread.so.0 libresolv.so.2
  libutil.so.1 libmvec.so.1 libanl.so.1 libgcc_s.so.1 'libstdc++.so.6*' 'libtinfo.so.6*'
  'libcuda.so*' 'libnvcuvid.so*' 'libnvidia-*.so*')
allowed() { local g; for g in "${ALLOWED[@]}"; do [[ $1 == $g ]] && return 0; done; return 1; }
die() { echo "gpu-bundle-check.sh: $*" >&2; exit 1; }

# ---- the part that runs the bundle (in the namespace when isolated) ----
hide_system_libs() { # $1: scratch dir; leaves only the allowed files in $SYS
  local keep=$1/keep f n
  mkdir -p "$keep"
  mount -t tmpfs -o size=1m,mode=755 gbc-keep "$keep"
  for f in "$SYS"/*; do
    n=${f##*/}
    allowed "$n" || continue
    if [ -L "$f" ]; then cp -P "$f" "$keep/$n"
    elif [ -f "$f" ]; then : > "$keep/$n"; mount --bind "$f" "$keep/$n"
    fi
  done
  mount --rbind "$keep" "$SYS"
}

run_cases() { # $1 bundle, $2 model, $3 work dir, $4 isolate (0/1)
  local B=$1 M=$2 W=$3 name
  mkdir -p "$W/ld" "$W/tmp"
  if [ "$4" = 1 ]; then hide_system_libs "$W"; fi   # from here on: only libc-only tools
  run() { # name, timeout, command...
    local name=$1 t=$2 rc=0; shift 2
    timeout "$t" env -i HOME=/tmp PATH=/usr/bin:/bin TMPDIR="$W/tmp" \
      LD_DEBUG=libs LD_DEBUG_OUTPUT="$W/ld/$name" /bin/bash "$B/env.sh" "$@" > "$W/$name.log" 2>&1 || rc=$?
    echo "$rc" > "$W/$name.rc"
  }
  run inspect 120 gst-inspect-1.0 mask2former
  run pipeline 300 gst-launch-1.0 -q videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! videoconvert \
    ! mask2former model="$M" ! segoverlay ! videoconvert ! x264enc ! mp4mux ! filesink location="$W/out.mp4"
  run nvcodec 120 gst-inspect-1.0 nvcodec
  # the directory listing as the bundle saw it, for the report
  for name in "$SYS"/*; do echo "${name##*/}"; done > "$W/visible-system-libs.txt"
}

if [ "${1:-}" = --inner ]; then run_cases "$2" "$3" "$4" 1; exit 0; fi

# ---- setup ----
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "${1:-}" ]; then BUNDLE=$1
elif [ -x "$HERE/gst/env.sh" ]; then BUNDLE=$HERE/gst   # this copy sits in .gpu/
else BUNDLE=$HERE/../.gpu/gst; fi
[ -d "$BUNDLE" ] || die "no bundle at $BUNDLE (make one with scripts/gpu-pack.sh or scripts/gst-bundle.sh <dir>)"
BUNDLE=$(cd "$BUNDLE" && pwd -P)
[ -x "$BUNDLE/env.sh" ] || die "$BUNDLE/env.sh missing: not a gst-bundle.sh folder"
[ -d "$BUNDLE/segstream" ] && compgen -G "$BUNDLE/segstream/*.so" >/dev/null ||
  die "no segstream plugin in $BUNDLE/segstream/ (scripts/gpu-pack.sh puts libgstsegstream.so there)"
if [ -z "${MODEL:-}" ]; then
  for m in "$BUNDLE"/../samples/models/*.onnx "$BUNDLE"/samples/models/*.onnx; do
    [ -f "$m" ] && [ -f "${m%.onnx}.json" ] && { MODEL=$m; break; }
  done
fi
[ -n "${MODEL:-}" ] || die "no sample model beside the bundle (<bundle>/../samples/models/<name>.onnx + .json); set MODEL=<x.onnx>"
MODEL=$(cd "$(dirname "$MODEL")" && pwd -P)/$(basename "$MODEL")
[ -f "${MODEL%.onnx}.json" ] || die "model card ${MODEL%.onnx}.json missing"

WORK=$(mktemp -d /tmp/gpu-bundle-check.XXXXXX)
trap 'rm -rf "$WORK/tmp"' EXIT   # the unpacked ONNX Runtime; logs stay

isolate=0
if [ "${GPU_BUNDLE_CHECK_ISOLATE:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
  unshare -m --propagation private true 2>/dev/null; then isolate=1; fi

echo "== bundle $BUNDLE ($(du -sm "$BUNDLE" | cut -f1) MiB), model $MODEL"
echo "== isolation: $([ $isolate = 1 ] && echo "private mount namespace, $SYS reduced to glibc/libgcc_s/libstdc++/libtinfo/NVIDIA" || echo "none (LD_DEBUG audit only)")"
echo "== logs: $WORK"
if [ $isolate = 1 ]; then
  unshare -m --propagation private /bin/bash "$0" --inner "$BUNDLE" "$MODEL" "$WORK" ||
    die "the isolated run failed to start (see above)"
else
  run_cases "$BUNDLE" "$MODEL" "$WORK" 0
fi

# ---- analysis (outside the namespace: the full system is back) ----
declare -A result detail
rc_of() { cat "$WORK/$1.rc"; }

if [ "$(rc_of inspect)" = 0 ] && grep -qE '^\s+Filename\s+.*/segstream/' "$WORK/inspect.log"; then
  result[a]=PASS; detail[a]="mask2former from $(grep -oE '/[^ ]*segstream/[^ ]+' "$WORK/inspect.log" | head -n1 | sed "s|$BUNDLE|<bundle>|")"
else
  result[a]=FAIL; detail[a]="rc=$(rc_of inspect): $(grep -v '^$' "$WORK/inspect.log" | tail -n1)"
fi

mp4_bytes=$(wc -c < "$WORK/out.mp4" 2>/dev/null || echo 0)
if [ "$(rc_of pipeline)" = 0 ] && [ "$mp4_bytes" -gt 0 ]; then
  result[b]=PASS; detail[b]="10 frames -> out.mp4, $mp4_bytes bytes"
else
  result[b]=FAIL; detail[b]="rc=$(rc_of pipeline), out.mp4 $mp4_bytes bytes: $(grep -v '^$' "$WORK/pipeline.log" | tail -n1)"
fi

if [ "$(rc_of nvcodec)" = 0 ] && grep -qE '^\s+Name\s+nvcodec' "$WORK/nvcodec.log"; then
  n=$(grep -oE '^\s+[0-9]+ features' "$WORK/nvcodec.log" | grep -oE '[0-9]+' || echo "?")
  result[c]=PASS
  if grep -q nvh264dec "$WORK/nvcodec.log"; then detail[c]="loaded, $n features, nvh264dec registered"
  else detail[c]="loaded, $n features (no nvh264dec: no usable NVIDIA GPU/driver here)"; fi
else
  result[c]=FAIL; detail[c]="rc=$(rc_of nvcodec): $(grep -v '^$' "$WORK/nvcodec.log" | tail -n1)"
fi

# d) static closure, and the tools env.sh's PATH finds are the bundle's
missing=()
for t in gst-launch-1.0 gst-inspect-1.0; do
  found=$(env -i HOME=/tmp PATH=/usr/bin:/bin TMPDIR="$WORK/tmp" /bin/bash "$BUNDLE/env.sh" /bin/bash -c "command -v $t" 2>/dev/null || true)
  [ "$found" = "$BUNDLE/bin/$t" ] || missing+=("$t (env.sh finds: ${found:-nothing})")
done
[ -x "$BUNDLE/bin/gst-plugin-scanner" ] || missing+=("bin/gst-plugin-scanner")
have_readelf=1; command -v readelf >/dev/null || have_readelf=0
for elf in "$BUNDLE"/bin/* "$BUNDLE"/plugins/*.so "$BUNDLE"/segstream/*.so "$BUNDLE"/lib/*; do
  [ $have_readelf = 1 ] && [ -f "$elf" ] && [ "$(head -c4 "$elf" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  while read -r so; do
    [ -e "$BUNDLE/lib/$so" ] || allowed "$so" || missing+=("$so (by ${elf#"$BUNDLE"/})")
  done < <(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
if [ ${#missing[@]} -eq 0 ] && [ $have_readelf = 0 ]; then result[d]=SKIP; detail[d]="no readelf here (binutils): DT_NEEDED not checked; tools are the bundle's"
elif [ ${#missing[@]} -eq 0 ]; then result[d]=PASS; detail[d]="every DT_NEEDED is in lib/ or allowed; tools are the bundle's"
else result[d]=FAIL; detail[d]="missing: ${missing[*]}"; fi

# e) LD_DEBUG audit over every process
declare -A loaded=()
if compgen -G "$WORK/ld/*" >/dev/null; then
  while read -r path; do loaded[$path]=1; done < <(sed -n 's/.*calling init: \(\/.*\)$/\1/p' "$WORK"/ld/* | sort -u)
fi
n_bundle=0; sys_ok=(); foreign=(); ort_from=""
for p in "${!loaded[@]}"; do
  case $p in
    "$BUNDLE"/*) n_bundle=$((n_bundle + 1)) ;;
    "$WORK/tmp/"*onnxruntime*) ort_from=$p; n_bundle=$((n_bundle + 1)) ;;
    *) if allowed "$(basename "$p")"; then sys_ok+=("$(basename "$p")"); else foreign+=("$p"); fi ;;
  esac
done
n_procs=$(ls "$WORK/ld" 2>/dev/null | wc -l)
if [ ${#loaded[@]} -gt 0 ] && [ ${#foreign[@]} -eq 0 ]; then
  result[e]=PASS
  detail[e]="$n_procs processes: $n_bundle objects from the bundle$([ -n "$ort_from" ] && echo " (ONNX Runtime unpacked from ort/*.xz)"), system only: $(printf '%s\n' "${sys_ok[@]}" | sort -u | tr '\n' ' ')"
else
  result[e]=FAIL; detail[e]="${#loaded[@]} objects seen; outside the bundle: ${foreign[*]:-none}"
fi

echo
echo "== gpu-bundle-check: $(basename "$BUNDLE") ($([ $isolate = 1 ] && echo isolated || echo not isolated))"
printf '  %-3s %-34s %-4s %s\n' "" check result detail
for k in a b c d e; do
  case $k in
    a) what="gst-inspect-1.0 mask2former" ;; b) what="pipeline videotestsrc->mp4" ;;
    c) what="gst-inspect-1.0 nvcodec" ;; d) what="static closure (readelf), tools" ;; e) what="loaded objects (LD_DEBUG=libs)" ;;
  esac
  printf '  %-3s %-34s %-4s %s\n' "$k)" "$what" "${result[$k]}" "${detail[$k]}"
done
for k in a b c d e; do [ "${result[$k]}" = PASS ] || [ "${result[$k]}" = SKIP ] || { echo "FAILED (logs in $WORK)" >&2; exit 1; }; done
echo "all passed (logs in $WORK)"
