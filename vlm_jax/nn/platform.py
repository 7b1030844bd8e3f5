"""The platform a computation is compiled for (chooses attention kernels and the Pallas interpret mode)."""

from __future__ import annotations

import jax


def target_platform() -> str:
    """The ambient mesh's device platform when a mesh is set, else the default backend. An ahead-of-time
    compile for a TPU topology from a CPU host (``vlm_jax.aot``) is "tpu"."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh is None or mesh.empty else getattr(mesh, "abstract_device", None)
    return jax.default_backend() if device is None else device.platform
