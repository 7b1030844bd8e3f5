"""Training metrics: JSONL rows, throughput and MFU arithmetic, TensorBoard files."""

import json
import os

import jax
import pytest

from vlm_jax.train import logger as logger_module
from vlm_jax.train.logger import MetricsLogger


def test_throughput_and_mfu(tmp_path, monkeypatch):
    clock = iter([100.0, 110.0])  # construction, then the log 10 s later
    monkeypatch.setattr(logger_module.time, "perf_counter", lambda: next(clock))
    log = MetricsLogger(str(tmp_path), total_steps=20, initial_step=0, progress=False, flops_per_token=6e6,
                        peak_flops=1e9)
    out = log.log(5, {"loss": 2.5}, examples=32, tokens=100, sequence_tokens=4096)
    log.close()
    # 5 steps in 10 s: 2 s/step; 32 examples / 2 s; MFU = 6e6 · 4096 / 2 s / (1e9 · devices)
    assert out["perf/step_seconds"] == pytest.approx(2.0)
    assert out["perf/examples_per_second"] == pytest.approx(16.0)
    assert out["perf/tokens_per_second"] == pytest.approx(50.0)
    assert out["perf/mfu"] == pytest.approx(6e6 * 4096 / 2.0 / (1e9 * jax.device_count()))
    with open(tmp_path / "metrics.jsonl") as f:
        row = json.loads(f.readline())
    assert row["step"] == 5 and row["train/loss"] == 2.5
    assert os.listdir(tmp_path / "tensorboard")
