"""SliME global branch: a per-token soft mixture of two adapters (spec/methods.md §6.3, ``GatedBlock``).

    expert 0: MLP(x)                 (LLaVA ``mlp2x_gelu``: Linear(Dv, D) → GELU → Linear(D, D))
    expert 1: MLP(Resampler_g(x))    (the SAME MLP instance after a g×g query resampler)
    out_t = G(x_t)_0 · expert0_t + G(x_t)_1 · expert1_t

The gate of output token t is computed from *input* token t (so ``g²`` must equal the token count). Both
experts always run (a dense 2-expert mixture). ``W_g, W_noise [Dv, 2]`` start at zero → 0.5 / 0.5.

Gate forms (``SlimeConfig.gate``):
  * ``"code"`` [code ``noisy_top_k_gating``]: ``logits = x·W_g``; in training add ``ε·(softplus(x·W_g) + 0.01)``
    (``W_g`` again: ``W_noise`` is dead); softmax; top-2 of 2 is dense; renormalise ``p / (Σp + 1e-6)``.
  * ``"paper"``: ``softmax(x·W_g + ε·softplus(x·W_noise))``, ε only in training.
``expert`` 0 / 1 bypasses the gate and returns that expert alone (stages I-a / I-b).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.hires.slime.config import SlimeConfig
from vlm_jax.hires.slime.resampler import Resampler
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.projectors import MLPProjector, ProjectorConfig

NOISE_FLOOR = 0.01  # [code] noise_epsilon of noisy_top_k_gating
RENORM_EPS = 1e-6  # [code] top-k renormalisation epsilon


class GatedGlobalAdapter(nnx.Module):
    """Global-view adapter. Owns the MLP that the local branch reuses (``self.mlp``)."""

    def __init__(self, cfg: SlimeConfig, vit_dim: int, llm_dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(dtypes=dtypes, rngs=rngs)
        self.mlp = MLPProjector(vit_dim, llm_dim, ProjectorConfig(act=cfg.act), **kw)
        self.resampler = Resampler(cfg.global_resampler, vit_dim, **kw)
        pdt = dtypes.param_dtype
        self.w_gate = nnx.Param(jnp.zeros((vit_dim, 2), pdt), out_sharding=("adapter_embed", None))
        self.w_noise = nnx.Param(jnp.zeros((vit_dim, 2), pdt), out_sharding=("adapter_embed", None))

    def gates(self, x: jax.Array, *, train: bool, rng: jax.Array | None = None) -> jax.Array:
        """Mixture weights ``float32 [..., P, 2]`` from the input tokens ``x [..., P, Dv]``.

        In training the noise ``ε ~ N(0, 1)`` is drawn from ``rng`` (required); in evaluation it is absent.
        """
        x32 = x.astype(jnp.float32)
        clean = x32 @ self.w_gate[...].astype(jnp.float32)
        logits = clean
        if train:
            if rng is None:
                raise ValueError("GatedGlobalAdapter: train=True needs an explicit rng for the gate noise")
            if self.cfg.gate == "code":
                std = jax.nn.softplus(clean) + NOISE_FLOOR
            else:
                std = jax.nn.softplus(x32 @ self.w_noise[...].astype(jnp.float32))
            logits = clean + jax.random.normal(rng, clean.shape) * std
        probs = jax.nn.softmax(logits, axis=-1)
        if self.cfg.gate == "code":
            probs = probs / (probs.sum(-1, keepdims=True) + RENORM_EPS)
        return probs

    def __call__(self, x: jax.Array, grid_hw: tuple[int, int], *, train: bool = False,
                 rng: jax.Array | None = None) -> jax.Array:
        """``x: [..., P, Dv]`` (global view tokens on the ``grid_hw`` patch grid) → ``[..., P, D]``."""
        expert = self.cfg.expert
        if expert == 0:
            return self.mlp(x)
        resampled = self.mlp(self.resampler(x, grid_hw))
        if expert == 1:
            return resampled
        if self.resampler.num_queries != x.shape[-2]:
            raise ValueError(f"GatedGlobalAdapter: the per-token gate needs global_grid² = tokens per view, got "
                             f"{self.resampler.num_queries} queries for {x.shape[-2]} tokens")
        g = self.gates(x, train=train, rng=rng).astype(resampled.dtype)
        return g[..., 0:1] * self.mlp(x) + g[..., 1:2] * resampled
