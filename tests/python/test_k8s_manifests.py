"""deploy/kubernetes: the batch Job is an Indexed Job whose pods each run one shard
(`segstream run ... --shard $(JOB_COMPLETION_INDEX)/N`) with N = completions, over the
shared PersistentVolumeClaim; and, where the `kubernetes-validate` package is installed,
both manifests validate against the Kubernetes schema (strict: no unknown fields)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
JOB = K8S / "segment-job.yaml"
PVC = K8S / "pvc.yaml"


def load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path.name}: one resource expected"
    return docs[0]


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def test_job_is_indexed_and_shards_by_completion_index():
    job = load(JOB)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert isinstance(n, int) and n >= 1
    assert 1 <= spec["parallelism"] <= n
    # backoffLimitPerIndex needs restartPolicy Never.
    assert spec["backoffLimitPerIndex"] >= 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    args = [str(a) for a in c["args"]]
    assert args[0] == "run"
    assert arg_after(args, "--shard") == f"$(JOB_COMPLETION_INDEX)/{n}"
    summary = arg_after(args, "--summary")
    assert summary.endswith(f"shard-$(JOB_COMPLETION_INDEX)-of-{n}.json")
    # Every path the command reads or writes is on the shared volume.
    (mount,) = c["volumeMounts"]
    data = mount["mountPath"]
    inputs = [a for a in args[1:] if not a.startswith("-")][0]
    for p in (inputs, arg_after(args, "--output"), arg_after(args, "--json"), summary):
        assert p.startswith(data + "/"), p
    (vol,) = pod["volumes"]
    assert vol["name"] == mount["name"]
    assert vol["persistentVolumeClaim"]["claimName"] == load(PVC)["metadata"]["name"]
    req = c["resources"]["requests"]
    assert "cpu" in req and "memory" in req
    # --threads matches the CPUs asked for.
    assert arg_after(args, "--threads") == str(req["cpu"])


def test_run_flags_exist():
    """The flags the Job passes are flags of `segstream run` (read from its source, so
    that no build is needed)."""
    src = (ROOT / "src" / "app" / "cli" / "run.rs").read_text()
    job = load(JOB)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    for a in args:
        m = re.fullmatch(r"--([a-z-]+)", str(a))
        if m:
            field = m.group(1).replace("-", "_")
            assert re.search(rf"pub {field}: ", src), f"--{m.group(1)} is not a run flag"


def test_pvc_is_shared():
    pvc = load(PVC)
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


@pytest.mark.skipif(shutil.which("kubernetes-validate") is None, reason="kubernetes-validate not installed")
def test_manifests_validate_against_the_kubernetes_schema():
    out = subprocess.run(
        ["kubernetes-validate", "--strict", "--quiet", str(JOB), str(PVC)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
