"""Shared setup for the Python tooling tests: the repository on sys.path, one torch
thread (CI has 2 cores, shared), and small random Mask2Former checkpoints on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """{spec name: (checkpoint dir, labels file)} for the specs the export tests use,
    saved with save_pretrained like a user's checkpoint."""
    from engines.m2f_tiny import SPECS, build_model, write_labels_file

    base = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name in ("swin-q12-k7", "swin-q20-k10"):
        d = base / name
        model = build_model(SPECS[name], seed=7)
        model.save_pretrained(d)
        labels = base / f"{name}-labels.json"
        write_labels_file(SPECS[name], labels)
        out[name] = (d, labels)
    return out
