"""Multi-host start-up: ``jax.distributed.initialize`` with a timeout, the same entry point on every host.

On TPU VMs / GKE / Slurm JAX finds the coordinator itself (``VLM_JAX_DISTRIBUTED=auto``). Elsewhere (several
CPU processes on one machine with Gloo collectives, GPU clusters without a scheduler) the launcher sets
``VLM_JAX_COORDINATOR`` (host:port), ``VLM_JAX_NUM_PROCESSES`` and ``VLM_JAX_PROCESS_ID``
(see ``launch/local.py``). Nothing is done when none of these is set: a single-process run.
"""

from __future__ import annotations

import logging
import os

import jax


def maybe_initialize(timeout_seconds: int = 300) -> bool:
    """Initialise the distributed runtime from the environment; returns whether it did."""
    coordinator = os.environ.get("VLM_JAX_COORDINATOR")
    if os.environ.get("VLM_JAX_DISTRIBUTED") == "auto":
        jax.distributed.initialize(initialization_timeout=timeout_seconds)
    elif coordinator:
        num, pid = os.environ.get("VLM_JAX_NUM_PROCESSES"), os.environ.get("VLM_JAX_PROCESS_ID")
        if num is None or pid is None:
            raise ValueError("VLM_JAX_COORDINATOR needs VLM_JAX_NUM_PROCESSES and VLM_JAX_PROCESS_ID")
        if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes=int(num), process_id=int(pid),
                                   initialization_timeout=timeout_seconds)
    else:
        return False
    logging.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
    return True
