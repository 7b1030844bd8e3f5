"""Host batches → global device arrays: each host contributes its slice of the global batch, sharded over the
mesh's batch axes (``act_batch`` in the rules table). Used by the trainer, the evaluation harness and AOT."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from vlm_jax import sharding
from vlm_jax.data.batching import TEXT_KEYS


def batch_sharding(mesh) -> NamedSharding:
    """Sharding of a batch array's leading axis over the mesh's batch axes."""
    return NamedSharding(mesh, sharding.logical_to_spec(("act_batch",), None, mesh))


def _same_length_on_all_hosts(local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hosts pick their length bucket from their own examples; pad every host to the longest (padding is
    ``valid=False``, so it changes no result)."""
    length = local["tokens"].shape[1]
    longest = int(np.max(multihost_utils.process_allgather(np.asarray(length))))
    if longest == length:
        return local
    return {k: np.pad(v, [(0, 0), (0, longest - length)]) if k in TEXT_KEYS + ("valid",) else v
            for k, v in local.items()}


def global_batch(local: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Per-host numpy batch → global arrays sharded over the batch axes of the mesh."""
    if jax.process_count() > 1:
        local = _same_length_on_all_hosts(local)

    def put(x):
        spec = sharding.logical_to_spec(("act_batch",) + (None,) * (x.ndim - 1),
                                        (x.shape[0] * jax.process_count(),) + x.shape[1:], mesh)
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x)

    return {k: put(v) for k, v in local.items()}
