# segstream — the two commands of the README:
#   make demo   installs what is missing, builds, runs the sample
#   make test   installs what is missing, builds, runs every test
# Both are idempotent and work as root on a fresh Debian 12 with the Rust toolchain and Python.

SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo
ORT_DIR := .ort/lib
ORT_LIB := $(ORT_DIR)/libonnxruntime.so
# OpenVINO's libraries: a link to the `libs` folder of the PyPI wheel (libopenvino_c.so.<v>
# needs its neighbours there: libopenvino, the device plugins, the ONNX frontend, TBB).
OV_LIB_DIR := .openvino/lib
STAMP := .dev

DEB_PACKAGES := pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	libgstreamer-plugins-bad1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools \
	gstreamer1.0-rtsp libgstrtspserver-1.0-dev mosquitto redis-server

.PHONY: setup deps-deb deps-py ort openvino triton build demo test test-rust test-python clean-out bench-compare pq-compare

setup: deps-deb deps-py ort openvino

# Debian packages: installed only when one is missing (for this machine's architecture: an
# arm64 copy of a package, see deps-aarch64, does not count).
deps-deb:
	@arch=$$(dpkg --print-architecture); \
	missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p:$$arch 2>/dev/null | grep -q 'ok installed' || echo $$p:$$arch; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Python tooling (torch, transformers, onnxruntime, ...): pip is quick when all is present.
deps-py: $(STAMP)/py-deps

$(STAMP)/py-deps: engines/requirements.txt
	@mkdir -p $(STAMP)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r engines/requirements.txt
	@touch $@

# The ONNX Runtime library of the PyPI wheel, copied into the project-local folder that
# the ort backend searches (.ort/lib/libonnxruntime.so).
ort: $(ORT_LIB)

$(ORT_LIB): $(STAMP)/py-deps
	@mkdir -p $(ORT_DIR)
	@src=$$($(PYTHON) -c 'import onnxruntime, os, glob; d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi"); print(sorted(glob.glob(os.path.join(d, "libonnxruntime.so*")))[0])') && \
		cp "$$src" $(ORT_LIB) && echo "ONNX Runtime: $$src -> $(ORT_LIB)"

# OpenVINO (backend=openvino): .openvino/lib links the PyPI wheel's libs folder, which the
# openvino backend searches (OPENVINO_LIB_PATH overrides). Made when missing or dangling.
openvino: $(STAMP)/py-deps
	@if [ ! -e $(OV_LIB_DIR)/libopenvino_intel_cpu_plugin.so ]; then \
		src=$$($(PYTHON) -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "libs"))') && \
		mkdir -p $(dir $(OV_LIB_DIR)) && ln -sfn "$$src" $(OV_LIB_DIR) && echo "OpenVINO: $$src -> $(OV_LIB_DIR)"; \
	fi

# Triton Inference Server for backend=triton's tests (tests/triton.rs): PyPI's nvidia-pytriton
# wheel unpacked into .triton/server, and a venv for its Python-backend model
# (scripts/triton-setup.sh; quick when present).
triton:
	@scripts/triton-setup.sh >/dev/null

build: setup
	$(CARGO) build --release --workspace

demo: build
	./target/release/segstream run

test: setup triton test-rust test-python

# `--all-targets`: the plugin, the binary, tests, examples and benches in one build with one
# feature set (a plain `cargo build` leaves the dev-dependencies out, which changes the
# features of shared dependencies, so `cargo test` would build the whole stack again).
test-rust:
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast
	# The TensorRT feature's Rust side (TensorRT itself is not installable here: the C++ shim
	# is skipped, nothing is linked; scripts/check-trt-shim.sh checks the shim's C++).
	SEGSTREAM_TRT_SKIP_SHIM=1 $(CARGO) check --workspace --features tensorrt
	# The GPU stages' Rust side (cudarc loads the driver at run time: no toolkit needed).
	$(CARGO) check --workspace --features cuda

test-python:
	$(PYTHON) -m pytest -q tests/python

# segstream against the Python reference pipeline (engines/peer_bench.py: transformers +
# PyTorch, same weights, same frames, same input size, same threads), both including decode
# and encode; prints both tables, the frames/s ratio and the overhead. docs/BENCHMARKS.md.
BENCH_FRAMES ?= 30
BENCH_THREADS ?= 2
bench-compare: setup
	$(CARGO) build --release --bin segstream
	@mkdir -p out
	$(PYTHON) engines/peer_bench.py --frames $(BENCH_FRAMES) --threads $(BENCH_THREADS) --json out/peer-bench.json
	./target/release/segstream bench --frames $(BENCH_FRAMES) --threads $(BENCH_THREADS) \
		--peer out/peer-bench.json --out out/bench.json --chart out/bench-chart.png

# PQ of segstream (both post-processing semantics) and of the PyTorch reference on all
# 180 frames of the sample, scored against samples/gt. docs/BENCHMARKS.md.
pq-compare: setup
	$(CARGO) build --release --bin segstream
	@mkdir -p out/pq
	./target/release/segstream run --no-overlay --threads $(BENCH_THREADS) --json out/pq/detectron2.jsonl \
		--coco-panoptic out/pq/detectron2
	./target/release/segstream run --no-overlay --threads $(BENCH_THREADS) --semantics transformers \
		--json out/pq/transformers.jsonl --coco-panoptic out/pq/transformers
	./target/release/segstream eval --gt samples/gt --pred out/pq/detectron2 --json out/pq/detectron2.json
	./target/release/segstream eval --gt samples/gt --pred out/pq/transformers --json out/pq/transformers.json
	$(PYTHON) engines/peer_bench.py --pq --threads $(BENCH_THREADS) --json out/pq/pytorch.json

clean-out:
	rm -rf out

# ---------------------------------------------------------------------------------------
# aarch64 (Jetson-class): a cross build here, and its tests and the sample run under
# emulation (qemu-user, explicit sysroot, no binfmt). Not part of `make test` (minutes of
# emulated work); results and dates in docs/BENCHMARKS.md. See docs/JETSON.md.
AARCH64 := aarch64-unknown-linux-gnu
# What cargo and the build scripts need to target aarch64 from here.
AARCH64_ENV := PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH= \
	PKG_CONFIG_LIBDIR=$(CURDIR)/.cross/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $(CURDIR)/.cross/qemu-root -E LD_LIBRARY_PATH=$(CURDIR)/.cross/dev/usr/lib/aarch64-linux-gnu"

.PHONY: deps-aarch64 cross-aarch64 aarch64-emulated

# Debian's arm64 packages (co-installable ones in the system, the two that would displace the
# host's development packages unpacked into .cross/), the cross compiler, qemu-user and
# Rust's aarch64 standard library; each only when missing (scripts/aarch64-deps.sh).
deps-aarch64: deps-deb
	scripts/aarch64-deps.sh

# The library, the command, the plugin and every test binary, for aarch64.
cross-aarch64: deps-aarch64
	$(AARCH64_ENV) $(CARGO) build --target $(AARCH64) --workspace --all-targets

# Library tests and `segstream run` on the sample under qemu, compared with the x86-64 run.
aarch64-emulated: cross-aarch64 ort
	AARCH64_ENV='$(AARCH64_ENV)' CARGO='$(CARGO)' PYTHON='$(PYTHON)' scripts/aarch64-emulated.sh
