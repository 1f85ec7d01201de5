#!/usr/bin/env bash
# What a cross build for aarch64 needs here, without touching the host's own development
# packages (`make deps-aarch64` calls this; idempotent).
#
# Debian 12 cannot co-install the arm64 and amd64 copies of libgstreamer-plugins-base1.0-dev
# and libgstrtspserver-1.0-dev (their GObject-introspection dependencies exist for one
# architecture at a time: installing the arm64 ones removes the amd64 ones, and the host
# build breaks). So:
#   - co-installable arm64 packages go into the system (multiarch): the C library, the
#     GStreamer core development files, the runtime libraries and the plugins the emulated
#     sample run uses;
#   - the others (those two, and libgstrtspserver-1.0-0, whose arm64 and amd64 copies
#     cannot be co-installed either) are only unpacked (`dpkg -x`) into .cross/dev, and a
#     pkg-config folder (.cross/pkgconfig) and a link folder (.cross/lib) are made from
#     them: their .pc files with libdir pointing at .cross/lib, where libNAME.so links to
#     the arm64 runtime library libNAME.so.N (in the system or in .cross/dev); the emulated
#     programs find .cross/dev's libraries through LD_LIBRARY_PATH (qemu -E).
#   - .cross/qemu-root: the sysroot qemu-user is given (-L): an
#     aarch64 /proc/cpuinfo. Debian 12's qemu 7.2 shows aarch64 programs the host's x86
#     /proc/cpuinfo, on which ONNX Runtime's CPU detection (cpuinfo) crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PKGS=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user libc6-dev:arm64
    libgstreamer1.0-dev:arm64 libgstreamer-plugins-base1.0-0:arm64
    gstreamer1.0-plugins-base:arm64 gstreamer1.0-plugins-good:arm64 gstreamer1.0-plugins-bad:arm64
    gstreamer1.0-libav:arm64)
UNPACKED_PKGS=(libgstreamer-plugins-base1.0-dev:arm64 libgstrtspserver-1.0-dev:arm64 libgstrtspserver-1.0-0:arm64)

dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
missing=()
for p in "${SYSTEM_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # --no-remove: refuse rather than remove a host package.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-remove "${missing[@]}" >/dev/null
fi

stamp=.cross/dev/.done
want=$(for p in "${UNPACKED_PKGS[@]}"; do apt-cache policy "$p" | awk '/Candidate:/ {print $2}'; done | tr '\n' ' ')
if [ ! -f $stamp ] || [ "$(cat $stamp)" != "$want" ]; then
    rm -rf .cross/dev .cross/pkgconfig .cross/lib .cross/debs
    mkdir -p .cross/dev .cross/pkgconfig .cross/lib .cross/debs
    (cd .cross/debs && apt-get download -qq "${UNPACKED_PKGS[@]}")
    for d in .cross/debs/*.deb; do dpkg -x "$d" .cross/dev; done
    libdir=/usr/lib/aarch64-linux-gnu
    for pc in .cross/dev$libdir/pkgconfig/*.pc; do
        sed "s|^libdir=.*|libdir=$PWD/.cross/lib|" "$pc" > .cross/pkgconfig/"$(basename "$pc")"
    done
    for so in .cross/dev$libdir/*.so; do
        target=$(readlink "$so")
        if [ -e ".cross/dev$libdir/$target" ]; then
            ln -sf "$PWD/.cross/dev$libdir/$target" .cross/lib/"$(basename "$so")"
        elif [ -e "$libdir/$target" ]; then
            ln -sf "$libdir/$target" .cross/lib/"$(basename "$so")"
        else
            echo "error: $target missing (runtime package not installed)" >&2
            exit 1
        fi
    done
    echo "$want" > $stamp
fi
# qemu's sysroot: the cross C library, and /proc/cpuinfo of a two-core Cortex-A78AE (Orin).
mkdir -p .cross/qemu-root/proc
rm -f .cross/qemu-root/lib  # the loader and libc both come from libc6:arm64 (the cross toolchain's copy is another build)
for i in 0 1; do
    printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' $i
done > .cross/qemu-root/proc/cpuinfo
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
