"""Shared helpers of the SliME tests (tests/test_slime_*.py)."""

import jax
import numpy as np
from flax import nnx

from vlm_jax.hires.slime import SlimeConfig

TINY = SlimeConfig(global_grid=4, local_grid=2, num_heads=4)  # Dv = D = 32, P = 16 (4×4), g = 2


def randomize_params(module: nnx.Module, seed: int, scale: float = 0.3) -> None:
    """Give every parameter (biases, LayerNorm scales, gates too) random values, in place."""
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(lambda x: (rng.normal(size=x.shape) * scale).astype(x.dtype), state))


@nnx.jit(static_argnames=("train",))
def jit_call(module: nnx.Module, *args, train: bool = False, **kwargs):
    """``module(*args, train=train, **kwargs)`` compiled as one program (eager op-by-op runs are slow)."""
    return module(*args, train=train, **kwargs)
