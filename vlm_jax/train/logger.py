"""Training metrics: JSONL file + TensorBoard (tensorboardX) + a progress bar, on process 0 only.

Throughput is derived from wall time between logs: examples/s, tokens/s, and model FLOPs utilisation
against ``peak_flops`` (per device, e.g. 459e12 for TPU v5p bf16): model FLOPs per step are estimated as
``6 · parameters · sequence tokens`` (forward 2, backward 4; attention's quadratic term left out).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
from tqdm import tqdm


class MetricsLogger:
    def __init__(self, workdir: str, total_steps: int, initial_step: int = 0, *, progress: bool | None = None,
                 flops_per_token: float | None = None, peak_flops: float | None = None):
        self.active = jax.process_index() == 0
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self._last = (time.perf_counter(), initial_step)
        self.bar = self.jsonl = self.tb = None
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        interactive = progress if progress is not None else os.isatty(2)
        self.bar = tqdm(total=total_steps, initial=initial_step, disable=not interactive, desc="train",
                        dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, Any], *, examples: int = 0, tokens: int = 0,
            sequence_tokens: int = 0, prefix: str = "train") -> dict[str, float]:
        """Write ``metrics`` (host scalars) for ``step``; adds throughput since the previous call.

        ``tokens``: loss tokens per step; ``sequence_tokens``: all (padded) positions per step, for the MFU.
        """
        now = time.perf_counter()
        t0, s0 = self._last
        self._last = (now, step)
        out = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
        if step > s0 and now > t0 and prefix == "train":
            dt = (now - t0) / (step - s0)
            out["perf/step_seconds"] = dt
            if examples:
                out["perf/examples_per_second"] = examples / dt
            if tokens:
                out["perf/tokens_per_second"] = tokens / dt
            if self.flops_per_token and self.peak_flops and sequence_tokens:
                out["perf/mfu"] = self.flops_per_token * sequence_tokens / dt / (self.peak_flops * jax.device_count())
        if self.active:
            self.jsonl.write(json.dumps({"step": step, **out}) + "\n")
            self.jsonl.flush()
            for k, v in out.items():
                if math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            if prefix == "train":
                self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in out.items()
                                      if k in ("train/loss", "train/accuracy", "perf/examples_per_second")})
        return out

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.active:
            self.bar.close()
            self.jsonl.close()
            self.tb.close()
