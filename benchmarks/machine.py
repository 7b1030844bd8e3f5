"""The machine a run measured: CPU model, cores used, library versions, load, date; and the thread pinning
that gives jax (XLA's CPU thread pool) and torch the same cores."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "pillow")


def pin_threads(threads: int) -> list[int]:
    """Use the first ``threads`` CPUs of this process's affinity for jax and torch alike; returns them.

    XLA sizes its CPU thread pool from the process's CPU affinity when the backend starts, so this must run
    before the first jax computation; torch gets ``set_num_threads`` (intra-op) to the same count.
    """
    import torch

    available = sorted(os.sched_getaffinity(0))
    if not 1 <= threads <= len(available):
        raise ValueError(f"threads={threads}: this process may use {len(available)} CPUs")
    cpus = available[:threads]
    os.sched_setaffinity(0, cpus)
    torch.set_num_threads(threads)
    return cpus


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(cpus: list[int]) -> dict:
    """CPU model, cores (machine / used), load averages, versions, platform and the UTC date."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "cores_used": len(cpus), "cpus": cpus,
        "load_average_1_5_15": list(os.getloadavg()), "versions": versions, "python": platform.python_version(),
        "platform": platform.platform(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
