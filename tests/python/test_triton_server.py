"""The Triton test harness (scripts/triton-serve.sh): a real Triton Inference Server on
loopback serving the sample ONNX model through the Python backend, spoken to over KServe v2
HTTP with urllib only. Skipped unless scripts/triton-setup.sh has prepared .triton/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / ".triton" / "server"
VENV = ROOT / ".triton" / "venv"
SERVE = ROOT / "scripts" / "triton-serve.sh"
MODEL = ROOT / "samples" / "models" / "shapes-m2f.onnx"
NAME = "shapes"
READY_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    not (
        (SERVER / "bin" / "tritonserver").exists()
        and (SERVER / "backends" / "python" / "triton_python_backend_stub").exists()
        and (VENV / "bin" / "python").exists()
    ),
    reason="Triton is not prepared (.triton/server, .triton/venv): run scripts/triton-setup.sh",
)

ort = pytest.importorskip("onnxruntime")


# --- the server ---------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Server:
    """One triton-serve.sh child; its process is the tritonserver (the script execs)."""

    def __init__(self, repo: Path, *args: str):
        self.repo = repo
        self.log_path = repo.parent / f"{repo.name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["bash", str(SERVE), str(MODEL), str(repo), "--name", NAME, *args],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http_port: int | None = None

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds from start until v2/health/ready answers 200."""
        start = time.monotonic()
        ports_env = self.repo / "ports.env"
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"triton-serve.sh exited with {self.proc.returncode}:\n{self.log_text()}")
            if self.http_port is None and ports_env.exists():
                env = dict(line.split("=", 1) for line in ports_env.read_text().split())
                self.http_port = int(env["HTTP_PORT"])
            if self.http_port is not None:
                try:
                    with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=1) as r:
                        if r.status == 200:
                            return time.monotonic() - start
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            time.sleep(0.05)
        pytest.fail(f"Triton not ready after {timeout} s:\n{self.log_text()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


def instance_pids(repo: Path) -> list[int]:
    """Live processes whose command line names this instance's model repository: the
    script, its watchdog, tritonserver and the Python backend's stub (zombies have none)."""
    key = str(repo).encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if key in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("triton") / "repo", "--lifetime", "600")
    server.ready_s = server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference():
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


# --- KServe v2 over HTTP ------------------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def infer_binary(server: Server, x: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    """One request with the binary tensor data extension: JSON header, then raw bytes."""
    header = {
        "inputs": [{"name": "pixel_values", "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
    }
    head = json.dumps(header).encode()
    req = urllib.request.Request(
        server.url(f"/v2/models/{NAME}/infer"),
        data=head + np.ascontiguousarray(x, dtype="<f4").tobytes(),
        headers={"Content-Type": "application/octet-stream",
                 "Inference-Header-Content-Length": str(len(head))},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            head_len = int(r.headers.get("Inference-Header-Content-Length", len(body)))
    except urllib.error.HTTPError as e:
        e.msg = f"{e.msg}: {e.read()!r}"  # the server's error text, for the report
        raise
    meta = json.loads(body[:head_len])
    result, offset = {}, head_len
    for out in meta["outputs"]:
        assert out["datatype"] == "FP32"
        size = out["parameters"]["binary_data_size"]
        data = np.frombuffer(body[offset:offset + size], dtype="<f4")
        result[out["name"]] = data.reshape(out["shape"])
        offset += size
    assert offset == len(body)
    return result


def infer_json(server: Server, x: np.ndarray) -> dict[str, np.ndarray]:
    body = {"inputs": [{"name": "pixel_values", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    req = urllib.request.Request(server.url(f"/v2/models/{NAME}/infer"),
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        meta = json.loads(r.read())
    return {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
            for o in meta["outputs"]}


def output_names(session) -> list[str]:
    return [o.name for o in session.get_outputs()]


def check_against(reference, x: np.ndarray, got: dict[str, np.ndarray]) -> None:
    want = dict(zip(output_names(reference), reference.run(None, {"pixel_values": x})))
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        diff = float(np.max(np.abs(got[name] - w)))
        assert diff < 1e-5, f"{name}: max abs diff {diff}"


# --- tests --------------------------------------------------------------------------------


def test_ready_and_server_metadata(triton):
    assert triton.ready_s < READY_TIMEOUT_S
    meta = get_json(triton.url("/v2"))
    assert meta["name"] == "triton" and "binary_tensor_data" in meta["extensions"]
    with urllib.request.urlopen(triton.url(f"/v2/models/{NAME}/ready"), timeout=5) as r:
        assert r.status == 200


def test_model_metadata_matches_onnx(triton, reference):
    meta = get_json(triton.url(f"/v2/models/{NAME}"))
    assert meta["name"] == NAME
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "python"

    def expected(args):
        # max_batch_size > 0: Triton reports the batch dimension as -1.
        return [{"name": a.name, "datatype": "FP32",
                 "shape": [-1] + [d if isinstance(d, int) else -1 for d in a.shape[1:]]}
                for a in args]

    assert meta["inputs"] == expected(reference.get_inputs())
    assert meta["outputs"] == expected(reference.get_outputs())
    assert meta["inputs"] == [{"name": "pixel_values", "datatype": "FP32",
                               "shape": [-1, 3, 160, 288]}]
    assert meta["outputs"] == [
        {"name": "class_queries_logits", "datatype": "FP32", "shape": [-1, 20, 7]},
        {"name": "masks_queries_logits", "datatype": "FP32", "shape": [-1, 20, 40, 72]},
    ]

    config = get_json(triton.url(f"/v2/models/{NAME}/config"))
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert [g["kind"] for g in config["instance_group"]] == ["KIND_CPU"]


@pytest.mark.parametrize("batch", [1, 2])
def test_inference_matches_onnxruntime(triton, reference, batch):
    x = np.random.default_rng(batch).standard_normal((batch, 3, 160, 288), dtype=np.float32)
    got = infer_binary(triton, x, output_names(reference))
    check_against(reference, x, got)


def test_json_inference_matches_onnxruntime(triton, reference):
    x = np.random.default_rng(11).standard_normal((1, 3, 160, 288), dtype=np.float32)
    check_against(reference, x, infer_json(triton, x))


def test_concurrent_requests_are_answered_each_with_its_own_result(triton, reference):
    # Requests the dynamic batcher groups run as one concatenated batch in model.py; each
    # response must still carry the rows of its own request.
    xs = [np.random.default_rng(100 + i).standard_normal((1 + i % 2, 3, 160, 288), dtype=np.float32)
          for i in range(4)]
    got: list = [None] * len(xs)

    def call(i):
        got[i] = infer_binary(triton, xs[i], output_names(reference))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for x, g in zip(xs, got):
        assert g is not None
        check_against(reference, x, g)


def test_oversized_batch_is_rejected(triton, reference):
    x = np.zeros((9, 3, 160, 288), dtype=np.float32)  # max_batch_size is 8
    with pytest.raises(urllib.error.HTTPError) as e:
        infer_binary(triton, x, output_names(reference))
    assert e.value.code == 400


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_killing_the_script_leaves_no_process(tmp_path, sig):
    http, grpc, metrics = free_ports(3)
    repo = tmp_path / "repo"
    server = Server(repo, "--http-port", str(http), "--grpc-port", str(grpc),
                    "--metrics-port", str(metrics), "--lifetime", "120")
    try:
        server.wait_ready()
        assert server.http_port == http
        pids = instance_pids(repo)
        # tritonserver (the script's own pid), the stub, the watchdog
        assert server.proc.pid in pids and len(pids) >= 3, pids
        os.kill(server.proc.pid, sig)
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while instance_pids(repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert instance_pids(repo) == [], server.log_text()
        for port in (http, grpc, metrics):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    finally:
        server.stop()


def test_lifetime_ends_the_server(tmp_path):
    repo = tmp_path / "repo"
    server = Server(repo, "--lifetime", "2")
    try:
        server.wait_ready()
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while instance_pids(repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert instance_pids(repo) == []
    finally:
        server.stop()


def test_server_stops_when_the_process_that_started_it_dies(tmp_path):
    # A test process that crashes without killing its server must not leak it.
    http, grpc, metrics = free_ports(3)
    repo = tmp_path / "repo"
    log = open(tmp_path / "repo.log", "wb")
    parent = subprocess.Popen(
        ["python3", "-c", "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
         "bash", str(SERVE), str(MODEL), str(repo), "--name", NAME, "--http-port", str(http),
         "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--lifetime", "120"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        else:
            pytest.fail("Triton not ready: " + (tmp_path / "repo.log").read_text())
        assert instance_pids(repo)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while instance_pids(repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert instance_pids(repo) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in instance_pids(repo):  # only this instance's processes
            os.kill(pid, signal.SIGKILL)
        log.close()
