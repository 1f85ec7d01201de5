#!/usr/bin/env bash
# Serve one ONNX model with Triton Inference Server (KServe v2 over HTTP and gRPC) on
# loopback, CPU only, through Triton's Python backend running ONNX Runtime.
# Needs scripts/triton-setup.sh to have prepared .triton/.
#
# Usage: scripts/triton-serve.sh MODEL.onnx REPO_DIR --name NAME [--card FILE | --no-card]
#            [--http-port P] [--grpc-port P] [--metrics-port P] [--max-batch N]
#            [--threads N] [--lifetime SECONDS] [--no-parent-watch] [--log-info]
#
# Writes REPO_DIR/NAME/{config.pbtxt,1/model.py,1/model.onnx} and REPO_DIR/ports.env, then
# execs tritonserver in the foreground: this script's process *is* the server, so killing
# it (SIGTERM or SIGKILL) stops the server; the Python backend's stub processes exit when
# the server is gone. A watchdog stops the server after --lifetime seconds (default 600,
# 0 = never) and, unless --no-parent-watch, when the process that started this script exits
# (so a crashed test leaks no server; start it from a process that stays, not `(cmd &)`).
# Ports not given are picked free. Defaults: --max-batch 8, --threads 1 (or
# $SEGSTREAM_TRITON_THREADS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T="$ROOT/.triton"
SERVER="$T/server"
VENV="$T/venv"

usage() { sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'triton-serve: %s\n' "$*" >&2; exit 1; }

MODEL="" REPO="" NAME="" CARD="" NO_CARD=0 HTTP_PORT="" GRPC_PORT="" METRICS_PORT=""
MAX_BATCH=8 THREADS="${SEGSTREAM_TRITON_THREADS:-1}" LIFETIME=600 LOG_INFO=0 PARENT_WATCH=1
while [ $# -gt 0 ]; do
    case "$1" in
        --name) NAME="${2:?}"; shift 2 ;;
        --card) CARD="${2:?}"; shift 2 ;;
        --no-card) CARD=""; NO_CARD=1; shift ;;
        --http-port) HTTP_PORT="${2:?}"; shift 2 ;;
        --grpc-port) GRPC_PORT="${2:?}"; shift 2 ;;
        --metrics-port) METRICS_PORT="${2:?}"; shift 2 ;;
        --max-batch) MAX_BATCH="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --lifetime) LIFETIME="${2:?}"; shift 2 ;;
        --log-info) LOG_INFO=1; shift ;;
        --no-parent-watch) PARENT_WATCH=0; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1" ;;
        *) if [ -z "$MODEL" ]; then MODEL="$1"; elif [ -z "$REPO" ]; then REPO="$1"; else usage; fi
           shift ;;
    esac
done
[ -n "$MODEL" ] && [ -n "$REPO" ] && [ -n "$NAME" ] || usage
[ -f "$MODEL" ] || die "no model file $MODEL"
# The card beside the model (X.onnx -> X.json) unless --card FILE or --no-card.
if [ -z "$CARD" ] && [ "$NO_CARD" = 0 ] && [ -f "${MODEL%.onnx}.json" ]; then CARD="${MODEL%.onnx}.json"; fi
[ -z "$CARD" ] || [ -f "$CARD" ] || die "no card file $CARD"
[ -x "$SERVER/bin/tritonserver" ] && [ -x "$VENV/bin/python" ] ||
    die "Triton is not prepared: run scripts/triton-setup.sh"
for n in "$MAX_BATCH" "$THREADS" "$LIFETIME"; do
    case "$n" in ''|*[!0-9]*) die "not a number: '$n'" ;; esac
done

mkdir -p "$REPO/$NAME/1"
REPO="$(cd "$REPO" && pwd)"
cp -f "$MODEL" "$REPO/$NAME/1/model.onnx"

# config.pbtxt from the ONNX's inputs and outputs (names, element types, dims), and free
# ports for those not given.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
read -r HTTP_PORT GRPC_PORT METRICS_PORT < <(
    "$VENV/bin/python" - "$REPO/$NAME" "$NAME" "$MAX_BATCH" "$THREADS" \
        "${HTTP_PORT:-0}" "${GRPC_PORT:-0}" "${METRICS_PORT:-0}" "$CARD" <<'PY'
import socket, sys
import onnxruntime as ort

model_dir, name, max_batch, threads = sys.argv[1:5]
max_batch = int(max_batch)
ports = [int(p) for p in sys.argv[5:8]]
card = sys.argv[8]

TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16",
         "tensor(double)": "TYPE_FP64", "tensor(int64)": "TYPE_INT64",
         "tensor(int32)": "TYPE_INT32", "tensor(int8)": "TYPE_INT8",
         "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}

sess = ort.InferenceSession(f"{model_dir}/1/model.onnx", providers=["CPUExecutionProvider"])

def dims(shape):
    # The first dim is the batch when batching: Triton leaves it out of dims.
    d = [x if isinstance(x, int) and x > 0 else -1 for x in shape]
    return d[1:] if max_batch > 0 else d

def tensors(kind, args):
    out = []
    for a in args:
        if a.type not in TYPES:
            sys.exit(f"triton-serve: unsupported element type {a.type} of {a.name}")
        out.append(f'  {{ name: "{a.name}" data_type: {TYPES[a.type]} dims: {dims(a.shape)} }}')
    return f"{kind} [\n" + ",\n".join(out) + "\n]\n"

cfg = f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
cfg += tensors("input", sess.get_inputs()) + tensors("output", sess.get_outputs())
if max_batch > 0:
    cfg += "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
cfg += "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
cfg += f'parameters: {{ key: "intra_op_threads" value: {{ string_value: "{threads}" }} }}\n'
# The model card (segstream.model/1), served with the model: segstream's backend=triton
# reads it from the model configuration when no local card is given.
if card:
    import json
    with open(card) as f:
        text = json.dumps(json.load(f), separators=(",", ":"), ensure_ascii=False)
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    cfg += f'parameters: {{ key: "segstream_card" value: {{ string_value: "{text}" }} }}\n'
with open(f"{model_dir}/config.pbtxt", "w") as f:
    f.write(cfg)

# Free ports: bind all three at once so that they differ, then release them.
socks = []
for i, p in enumerate(ports):
    if p == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports[i] = s.getsockname()[1]
for s in socks:
    s.close()
print(*ports)
PY
)
[ -n "$METRICS_PORT" ] || die "could not write $REPO/$NAME/config.pbtxt"

# The Python model: ONNX Runtime on the CPU, one run per batch of requests.
sed "s|@SITE_PACKAGES@|$SITE|" >"$REPO/$NAME/1/model.py" <<'PY'
"""Triton Python-backend model: runs model.onnx (beside this file) with ONNX Runtime.
Requests that the dynamic batcher hands over together run as one concatenated batch."""
import json
import os
import sys

# The stub embeds Debian's Python in isolated mode (PYTHONPATH is ignored): numpy (which
# triton_python_backend_utils imports) and onnxruntime come from this venv.
SITE_PACKAGES = os.environ.get("SEGSTREAM_TRITON_SITE_PACKAGES", "@SITE_PACKAGES@")
if SITE_PACKAGES not in sys.path:
    sys.path.insert(0, SITE_PACKAGES)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        threads = int(os.environ.get("SEGSTREAM_TRITON_THREADS") or params.get("intra_op_threads") or 1)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        self.outputs = [o.name for o in self.session.get_outputs()]
        # Warm-up run (batch 1) so that the first request is not the slow one.
        if all(isinstance(d, int) for d in inp.shape[1:]):
            self.session.run(self.outputs, {self.input: np.zeros([1, *inp.shape[1:]], np.float32)})

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        try:
            batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            results = self.session.run(self.outputs, {self.input: np.ascontiguousarray(batch)})
        except Exception as e:  # one failure answers every request of the batch
            err = pb_utils.TritonError(f"onnxruntime: {e}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        responses, start = [], 0
        for a in arrays:
            end = start + a.shape[0]
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(r[start:end]))
                       for n, r in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
PY

printf 'HTTP_PORT=%s\nGRPC_PORT=%s\nMETRICS_PORT=%s\n' "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT" >"$REPO/ports.env"
printf 'triton-serve: %s (%s) http 127.0.0.1:%s grpc 127.0.0.1:%s metrics 127.0.0.1:%s lifetime %ss pid %s\n' \
    "$NAME" "$(basename "$MODEL")" "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT" "$LIFETIME" "$$" >&2

# The bundled libraries; one thread per library unless asked.
export LD_LIBRARY_PATH="$SERVER/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Watchdog: this shell's PID becomes the server's at exec. Stop it after the lifetime or
# when our parent exits; quit as soon as the server is gone (a zombie counts as gone). No
# fds of ours kept open.
SERVER_PID=$$ PARENT_PID=$PPID
[ "$PARENT_WATCH" = 1 ] || PARENT_PID=$SERVER_PID
(
    trap '' TERM INT HUP
    running() { # PID alive and not a zombie
        local st
        st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
        st="${st##*) }"
        [ "${st%% *}" != Z ]
    }
    waited=0
    while running "$SERVER_PID"; do
        if { [ "$LIFETIME" -gt 0 ] && [ "$waited" -ge "$LIFETIME" ]; } || ! running "$PARENT_PID"; then
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8; do
                sleep 1
                running "$SERVER_PID" || exit 0
            done
            kill -KILL "$SERVER_PID" 2>/dev/null || true
            exit 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
) </dev/null >/dev/null 2>&1 &

# Warnings and errors only, unless --log-info.
LOG=(--log-info=false)
[ "$LOG_INFO" = 1 ] && LOG=(--log-info=true)
exec "$SERVER/bin/tritonserver" \
    --model-repository="$REPO" \
    --backend-directory="$SERVER/backends" \
    --cache-directory="$SERVER/caches" \
    --disable-auto-complete-config \
    --model-control-mode=none \
    --strict-readiness=true \
    --exit-on-error=true \
    --exit-timeout-secs=5 \
    --http-address=127.0.0.1 --http-port="$HTTP_PORT" \
    --grpc-address=127.0.0.1 --grpc-port="$GRPC_PORT" \
    --metrics-address=127.0.0.1 --metrics-port="$METRICS_PORT" \
    --allow-gpu-metrics=false --pinned-memory-pool-byte-size=0 \
    "${LOG[@]}" --log-warning=true --log-error=true --log-verbose=0
