"""Two processes with Gloo collectives on localhost train the tiny model exactly like one process with the
same global batch: per-host data slices, global arrays and checkpoints work across processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
TINY = ["--config=configs/tiny_entitygrid.py:steps=3", "--config.train.log_every=1", "--config.train.ckpt_every=3",
        "--config.model.vision.layers=1", "--config.model.llm.num_layers=1", "--config.data.source.canvas=64",
        "--config.data.eval_source.size=0"]


def _run(args, tmp_path, name):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{name} failed:\n{out.stderr[-3000:]}"
    with open(tmp_path / name / "metrics.jsonl") as f:
        return {r["step"]: r["train/loss"] for r in map(json.loads, f) if "train/loss" in r}


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """``data.batch_size`` is the global batch: each of the two processes reads 4 examples per step."""
    two = _run(["launch/local.py", "--processes=2", "--devices_per_process=2", "--", "train", *TINY,
                "--config.data.batch_size=8", "--config.mesh.data=4", f"--workdir={tmp_path / 'two'}"], tmp_path, "two")
    one = _run(["launch/local.py", "--processes=1", "--devices_per_process=4", "--", "train", *TINY,
                "--config.data.batch_size=8", "--config.mesh.data=4", f"--workdir={tmp_path / 'one'}"], tmp_path, "one")
    assert sorted(two) == sorted(one) == [1, 2, 3]
    np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)
    assert os.path.isdir(tmp_path / "two" / "checkpoints" / "3")
