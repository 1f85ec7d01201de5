#!/usr/bin/env bash
# Syntax- and type-check segstream's TensorRT shim against a TensorRT include dir, without
# TensorRT installed (CI cannot install it): g++ -fsyntax-only, nothing is linked.
#
#   scripts/check-trt-shim.sh TRT_INCLUDE CUDA_INCLUDE [PARSER_INCLUDE]
#
# TRT_INCLUDE: TensorRT's include/ (NvInfer.h, NvInferVersion.h, ...), e.g. NVIDIA/TensorRT's
#   include/ at tag v10.3.0 or v11.1.
# CUDA_INCLUDE: CUDA's include/ (cuda_runtime_api.h and crt/), or several dirs joined by ':'
#   when they come apart, as from PyPI: nvidia-cuda-runtime-cu12's nvidia/cuda_runtime/include
#   plus nvidia-cuda-nvcc-cu12's nvidia/cuda_nvcc/include (which holds crt/host_defines.h).
# PARSER_INCLUDE: where NvOnnxParser.h is when TRT_INCLUDE lacks it (TensorRT 10.x's public
#   repository keeps it in onnx/onnx-tensorrt, e.g. branch 10.1-GA).
set -euo pipefail
if [[ $# -lt 2 || $# -gt 3 ]]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
trt=$1 cuda=$2 parser=${3:-}
here=$(cd "$(dirname "$0")/.." && pwd)
shim=$here/src/backend/tensorrt/shim
for f in "$trt/NvInfer.h" "$trt/NvInferVersion.h"; do
    [[ -f $f ]] || { echo "check-trt-shim: missing $f" >&2; exit 2; }
done
incs=(-I "$shim" -isystem "$trt")
IFS=: read -r -a cuda_dirs <<<"$cuda"
found=
for d in "${cuda_dirs[@]}"; do
    incs+=(-isystem "$d")
    [[ -f $d/cuda_runtime_api.h ]] && found=1
done
[[ -n $found ]] || { echo "check-trt-shim: no cuda_runtime_api.h in $cuda" >&2; exit 2; }
if [[ -n $parser ]]; then
    incs+=(-isystem "$parser")
fi
CXX=${CXX:-g++}
# The version as the preprocessor sees it (11.x defines it through TRT_*_ENTERPRISE).
ver=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' |
    "$CXX" -E -P -x c++ -isystem "$trt" - | tail -n 1 | tr -d ' ')
echo "check-trt-shim: TensorRT ${ver:-?} headers in $trt"
set -x
# -Werror: a warning in the shim's own code fails (TensorRT's and CUDA's headers are -isystem:
# theirs are silent). Deprecations of late 10.x are silenced in the shim where it uses them.
"$CXX" -fsyntax-only -std=c++17 -Wall -Wextra -Werror "${incs[@]}" "$shim/segstream_trt.cpp"
# The C header must also stand alone as C (what the Rust declarations mirror).
"${CC:-gcc}" -fsyntax-only -std=c99 -Wall -x c "$shim/segstream_trt.h"
{ set +x; } 2>/dev/null
echo "check-trt-shim: OK (TensorRT ${ver:-?})"
