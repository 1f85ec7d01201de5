#!/usr/bin/env bash
# Assemble a trimmed GStreamer 1.22 runtime (Debian 12 packages) for a machine that has no
# GStreamer (the lent H100/H200 machines: NVIDIA driver, glibc, libstdc++, nothing else):
#
#   scripts/gst-bundle.sh <dest> [<extra ELF>...]      # as root (apt-get download)
#   <dest>/env.sh gst-launch-1.0 ...                   # or: source <dest>/env.sh (bash)
#
# 1. `apt-get download`s the packages below into .cache/gst-debs/ (once; later runs reuse
#    them) and `dpkg -x`es them into .cache/gst-stage/ (again only when the set changed);
# 2. copies the tools gst-launch-1.0, gst-inspect-1.0, gst-plugin-scanner (and xz, which
#    env.sh uses to unpack a compressed ONNX Runtime) into <dest>/bin, the plugins in
#    $PLUGINS into <dest>/plugins, and the shared-library closure of all of them (and of
#    the extra ELF files given, e.g. our libgstsegstream.so) into <dest>/lib, found by
#    following DT_NEEDED (readelf -d) inside the unpacked packages; glibc, libgcc_s and
#    libstdc++ stay out (the GPU machine has them), as do the NVIDIA driver's libraries
#    that nvcodec opens at run time (libcuda, libnvcuvid);
# 3. writes <dest>/env.sh, the launcher (see its header), and prints the sizes.
# It replaces <dest>/{bin,lib,plugins,env.sh} and leaves anything else in <dest> (the
# segstream plugin folder, ort/, which scripts/gpu-pack.sh adds) alone. Idempotent.
set -euo pipefail

die() { echo "gst-bundle.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 <dest> [<extra ELF>...]"
DEST=$1; shift
EXTRA=("$@")
for f in "${EXTRA[@]}"; do [ -f "$f" ] || die "extra ELF file $f does not exist"; done
for tool in apt-get dpkg readelf; do command -v "$tool" >/dev/null || die "$tool not found (Debian 12 host needed)"; done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$ROOT/.cache/gst-debs
STAGE=$ROOT/.cache/gst-stage
ARCH=amd64
MULTIARCH=x86_64-linux-gnu

# Packages (Debian 12): GStreamer + the plugins' packages + the libraries they link.
PACKAGES=(
  libgstreamer1.0-0 gstreamer1.0-tools
  gstreamer1.0-plugins-base libgstreamer-plugins-base1.0-0
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad libgstreamer-plugins-bad1.0-0 libgstreamer-gl1.0-0
  gstreamer1.0-plugins-ugly libx264-164
  libglib2.0-0 libffi8 libpcre2-8-0 zlib1g libselinux1 libmount1 libblkid1
  liborc-0.4-0 libunwind8 libdw1 libelf1 libbz2-1.0 liblzma5 xz-utils
  libegl1 libgl1 libglx0 libglvnd0 libgbm1 libdrm2 libexpat1
  libx11-6 libx11-xcb1 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0
  libwayland-client0 libwayland-cursor0 libwayland-egl1 libwayland-server0
  libgudev-1.0-0 libudev1
)
PLUGINS=(app coreelements isomp4 nvcodec typefindfunctions videoconvertscale videoparsersbad videotestsrc x264)
# From the target machine, never bundled: glibc, the GCC runtime, the NVIDIA driver.
is_system_lib() {
  case $1 in
    ld-linux-x86-64.so.2 | libc.so.6 | libm.so.6 | libdl.so.2 | librt.so.1 | libpthread.so.0 | \
      libresolv.so.2 | libutil.so.1 | libmvec.so.1 | libanl.so.1 | libgcc_s.so.1 | libstdc++.so.6 | \
      libcuda.so* | libnvcuvid.so* | libnvidia-*) return 0 ;;
  esac
  return 1
}

# 1. download what the cache lacks
mkdir -p "$CACHE"
missing=()
for p in "${PACKAGES[@]}"; do
  compgen -G "$CACHE/${p}_*.deb" >/dev/null || missing+=("$p:$ARCH")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get download ${#missing[@]} packages into ${CACHE#"$ROOT"/}"
  (cd "$CACHE" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}") ||
    die "apt-get download failed (as root, after 'apt-get update'?): ${missing[*]}"
fi
gst_deb=$(compgen -G "$CACHE/libgstreamer1.0-0_*.deb" | head -n1)
case $(dpkg-deb -f "$gst_deb" Version) in 1.22.*) ;; *) die "$gst_deb is not GStreamer 1.22 (not a Debian 12 apt source?)" ;; esac

# 2. unpack (only when the set of .debs changed)
debs=()
for p in "${PACKAGES[@]}"; do
  mapfile -t found < <(compgen -G "$CACHE/${p}_*.deb" | sort)
  [ ${#found[@]} -eq 1 ] || die "expected one ${p}_*.deb in $CACHE, found ${#found[@]}: remove the stale ones"
  debs+=("${found[0]}")
done
stamp=$(for d in "${debs[@]}"; do basename "$d"; done | md5sum | cut -d' ' -f1)
if [ "$(cat "$STAGE/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "== unpacking ${#debs[@]} packages into ${STAGE#"$ROOT"/}"
  rm -rf "$STAGE"; mkdir -p "$STAGE"
  for d in "${debs[@]}"; do dpkg -x "$d" "$STAGE"; done
  echo "$stamp" > "$STAGE/.stamp"
fi

# 3. tools, plugins, library closure
LIBDIRS=("$STAGE/usr/lib/$MULTIARCH" "$STAGE/lib/$MULTIARCH")
find_lib() { # soname -> path in the staging tree (or nothing)
  local d
  for d in "${LIBDIRS[@]}"; do [ -e "$d/$1" ] && { echo "$d/$1"; return; }; done
  return 0
}
rm -rf "$DEST/bin" "$DEST/lib" "$DEST/plugins" "$DEST/env.sh"
mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/plugins"
DEST=$(cd "$DEST" && pwd)

tools=(
  "$STAGE/usr/bin/gst-launch-1.0" "$STAGE/usr/bin/gst-inspect-1.0"
  "$STAGE/usr/lib/$MULTIARCH/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "$STAGE/usr/bin/xz"
)
for t in "${tools[@]}"; do [ -f "$t" ] || die "missing in the packages: $t"; cp "$t" "$DEST/bin/"; done
for p in "${PLUGINS[@]}"; do
  f=$STAGE/usr/lib/$MULTIARCH/gstreamer-1.0/libgst$p.so
  [ -f "$f" ] || die "plugin $p not found ($f): which package has it? (dpkg -S libgst$p.so)"
  cp "$f" "$DEST/plugins/"
done

declare -A seen=()
queue=("$DEST"/bin/* "$DEST"/plugins/* "${EXTRA[@]}")
unresolved=()
while [ ${#queue[@]} -gt 0 ]; do
  elf=${queue[0]}; queue=("${queue[@]:1}")
  while read -r soname; do
    [ -n "$soname" ] || continue
    [ -z "${seen[$soname]:-}" ] || continue
    seen[$soname]=1
    is_system_lib "$soname" && continue
    path=$(find_lib "$soname")
    if [ -z "$path" ]; then unresolved+=("$soname (needed by $(basename "$elf"))"); continue; fi
    cp -L "$path" "$DEST/lib/$soname"
    queue+=("$DEST/lib/$soname")
  done < <(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
if [ ${#unresolved[@]} -gt 0 ]; then
  printf '  %s\n' "${unresolved[@]}" >&2
  die "libraries above are in none of the packages: add their package to PACKAGES (find it with: dpkg -S <soname>)"
fi

# 4. the launcher
cat > "$DEST/env.sh" <<'ENV'
#!/usr/bin/env bash
# Environment of this GStreamer bundle (written by scripts/gst-bundle.sh), from any
# working directory:
#
#   <bundle>/env.sh gst-launch-1.0 videotestsrc ! fakesink   # run one command in it
#   source <bundle>/env.sh                                  # set it in this bash
#
# LD_LIBRARY_PATH=<bundle>/lib first; plugins only from <bundle>/plugins and
# <bundle>/segstream (GST_PLUGIN_PATH empty); the bundle's gst-plugin-scanner; a fresh
# registry file under a new temporary folder each time (never a carried one: nvcodec
# registers its elements per GPU when it is scanned); GIO modules off; PATH=<bundle>/bin
# first. When <bundle>/ort/libonnxruntime.so.xz exists and ORT_DYLIB_PATH does not name a
# file, it is unpacked once to $TMPDIR (or /tmp) and ORT_DYLIB_PATH points at it.
# Uses only bash, mktemp, rm, ln and the bundle's xz. (Sourced, it leaves the shell's
# options as they were; run, it is strict: set -euo pipefail.)
_gsb_src=${BASH_SOURCE[0]}
case $_gsb_src in */*) _gsb_dir=${_gsb_src%/*} ;; *) _gsb_dir=. ;; esac
GST_BUNDLE_DIR=$(cd "$_gsb_dir" && pwd -P) || { echo "env.sh: cannot resolve the bundle folder" >&2; return 1 2>/dev/null || exit 1; }
export GST_BUNDLE_DIR
unset _gsb_src _gsb_dir
if [ ! -x "$GST_BUNDLE_DIR/bin/gst-plugin-scanner" ]; then
  echo "env.sh: $GST_BUNDLE_DIR/bin/gst-plugin-scanner missing: not a gst-bundle.sh folder" >&2
  return 1 2>/dev/null || exit 1
fi
case ":${LD_LIBRARY_PATH:-}:" in
  *":$GST_BUNDLE_DIR/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$GST_BUNDLE_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
case ":$PATH:" in *":$GST_BUNDLE_DIR/bin:"*) ;; *) export PATH="$GST_BUNDLE_DIR/bin:$PATH" ;; esac
# The _1_0 variants win over the plain ones when set: set both.
for _gsb_v in GST_PLUGIN_SYSTEM_PATH GST_PLUGIN_SYSTEM_PATH_1_0; do
  export "$_gsb_v=$GST_BUNDLE_DIR/plugins:$GST_BUNDLE_DIR/segstream"
done
export GST_PLUGIN_PATH= GST_PLUGIN_PATH_1_0=
export GST_PLUGIN_SCANNER="$GST_BUNDLE_DIR/bin/gst-plugin-scanner" GST_PLUGIN_SCANNER_1_0="$GST_BUNDLE_DIR/bin/gst-plugin-scanner"
GST_BUNDLE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/gst-bundle.XXXXXX") || { echo "env.sh: mktemp failed" >&2; return 1 2>/dev/null || exit 1; }
export GST_BUNDLE_TMP GST_REGISTRY="$GST_BUNDLE_TMP/registry.bin" GST_REGISTRY_1_0="$GST_BUNDLE_TMP/registry.bin"
export GIO_MODULE_DIR="$GST_BUNDLE_DIR/gio-modules" GIO_USE_VFS=local
unset _gsb_v
if [ -f "$GST_BUNDLE_DIR/ort/libonnxruntime.so.xz" ] && [ ! -f "${ORT_DYLIB_PATH:-}" ]; then
  _gsb_key=unknown
  [ -f "$GST_BUNDLE_DIR/ort/key" ] && read -r _gsb_key < "$GST_BUNDLE_DIR/ort/key"
  _gsb_ort="${TMPDIR:-/tmp}/segstream-libonnxruntime-$_gsb_key.so"
  if [ ! -f "$_gsb_ort" ]; then
    if "$GST_BUNDLE_DIR/bin/xz" -dc "$GST_BUNDLE_DIR/ort/libonnxruntime.so.xz" > "$GST_BUNDLE_TMP/libonnxruntime.so"; then
      ln "$GST_BUNDLE_TMP/libonnxruntime.so" "$_gsb_ort" 2>/dev/null || true   # atomic; a parallel run may win
      rm -f "$GST_BUNDLE_TMP/libonnxruntime.so"
    else
      echo "env.sh: could not unpack $GST_BUNDLE_DIR/ort/libonnxruntime.so.xz" >&2
    fi
  fi
  [ -f "$_gsb_ort" ] && export ORT_DYLIB_PATH="$_gsb_ort"
  unset _gsb_key _gsb_ort
fi

if [ "${BASH_SOURCE[0]}" = "$0" ]; then   # run, not sourced
  set -euo pipefail
  if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]   (or: source $0)" >&2
    rm -rf "$GST_BUNDLE_TMP"; exit 2
  fi
  rc=0; "$@" || rc=$?
  rm -rf "$GST_BUNDLE_TMP"
  exit $rc
fi
ENV
chmod +x "$DEST/env.sh"

echo "== $DEST: $(du -sh "$DEST/bin" | cut -f1) bin, $(du -sh "$DEST/lib" | cut -f1) lib ($(ls "$DEST/lib" | wc -l) files), $(du -sh "$DEST/plugins" | cut -f1) plugins; GStreamer runtime $(du -csm "$DEST/bin" "$DEST/lib" "$DEST/plugins" "$DEST/env.sh" | tail -n1 | cut -f1) MiB"
