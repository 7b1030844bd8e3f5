"""Vision Transformer encoder for CLIP / SigLIP / InternViT towers (Dosovitskiy et al. 2021).

    pixels [N, H, W, C] ─patchify─▶ [N, P, p·p·C] ─Dense─▶ [N, P, D] (+pos) (⊕CLS) (pre-LN)
        ─▶ layers 0 … L-1 (LayerStack scan; hooks between layers) ─▶ (final LN) ─▶ VisionOutput

``N`` is every tile of every image at once (DESIGN.md data flow); padded tiles are computed like
the others and ignored downstream through ``tile_mask``, so attention never needs a mask inside a
tile. Layer selection follows HF ``hidden_states`` indexing (index 0 = embeddings output, after
CLIP's ``pre_layrnorm``; ``-1`` = last layer), and only the layers needed are run. Hooks are how
in-encoder adapters (HiRes-LLaVA SliceRestore, methods.md §3) see the full token sequence.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.posemb import interpolate_pos_embed
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.nn.stack import LayerStack
from vlm_jax.sharding import constrain
from vlm_jax.vision.blocks import encoder_layer, layer_norm
from vlm_jax.vision.config import ViTConfig
from vlm_jax.vision.map_head import MAPHead

ACT_AXES = ("act_batch", "act_len", "act_embed")
Hook = Callable[[jax.Array], jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VisionOutput:
    """``patches [N, P, D]`` (row-major patch grid) and ``cls [N, D]`` (None without a CLS token)."""

    patches: jax.Array
    cls: jax.Array | None


def patchify(pixels: jax.Array, patch: int) -> jax.Array:
    """``[N, H, W, C] -> [N, (H/p)·(W/p), p·p·C]`` (H, W multiples of p), patches row-major,
    pixels (y, x, c) inside a patch."""
    n, h, w, c = pixels.shape
    gh, gw = h // patch, w // patch
    x = pixels.reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, gh * gw, patch * patch * c)


class ViT(nnx.Module):
    """ViT encoder; see module docstring. Parameters carry ``vit_*`` logical axis names and live in
    ``dtypes.param_dtype``; activations are in ``dtypes.compute_dtype`` (float32 by default: a standalone tower)."""

    def __init__(self, cfg: ViTConfig, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        pdt = dtypes.param_dtype
        patch_dim = cfg.patch * cfg.patch * cfg.channels
        self.patch_embed = Dense(patch_dim, cfg.hidden, axes=("vit_patch", "vit_embed"), use_bias=cfg.patch_bias,
                                 dtypes=dtypes, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        self.pos_embed = nnx.Param(init(rngs.params(), (cfg.num_positions, cfg.hidden), pdt),
                                   out_sharding=("vit_pos", "vit_embed"))
        self.cls = (nnx.Param(init(rngs.params(), (cfg.hidden,), pdt), out_sharding=("vit_embed",))
                    if cfg.cls_token else None)
        self.pre_norm = layer_norm(cfg, dtypes) if cfg.pre_norm else None
        self.encoder = LayerStack(lambda r: encoder_layer(cfg, dtypes=dtypes, rngs=r), cfg.layers, remat=cfg.remat,
                                  rngs=rngs)
        self.final_norm = layer_norm(cfg, dtypes) if cfg.final_norm != "none" else None
        self.head = MAPHead(cfg, dtypes=dtypes, rngs=rngs) if cfg.map_head else None

    def embed(self, pixels: jax.Array, *, interpolate_pos: bool = False) -> jax.Array:
        """``pixels [N, H, W, C] -> tokens [N, (1+) P, D]`` (HF ``hidden_states[0]``)."""
        cfg = self.cfg
        if pixels.ndim != 4 or pixels.shape[-1] != cfg.channels:
            raise ValueError(f"pixels must be [N, H, W, {cfg.channels}], got shape {pixels.shape}")
        n, h, w, _ = pixels.shape
        grid = (h // cfg.patch, w // cfg.patch)
        if min(grid) == 0:
            raise ValueError(f"image size {h}x{w} is smaller than the patch size {cfg.patch}")
        if grid != (cfg.grid, cfg.grid) and not interpolate_pos:
            raise ValueError(f"image size {h}x{w} differs from the configured {cfg.image_size}x{cfg.image_size}; "
                             "pass interpolate_pos=True to resize the position embeddings")
        pos = interpolate_pos_embed(self.pos_embed[...], (cfg.grid, cfg.grid), grid, has_cls=cfg.cls_token)
        x = self.patch_embed(patchify(pixels[:, :grid[0] * cfg.patch, :grid[1] * cfg.patch], cfg.patch))
        if self.cls is not None:
            x = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(x.dtype), (n, 1, cfg.hidden)), x], axis=1)
        x = x + pos.astype(x.dtype)[None]
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        return constrain(x, ACT_AXES)

    def run_layers(self, x: jax.Array, start: int, stop: int) -> jax.Array:
        """Encoder layers ``[start, stop)`` on ``x [N, T, D]``."""

        def body(layer, carry, _):
            return constrain(layer(carry), ACT_AXES), None

        return self.encoder.scan(body, x, start=start, stop=stop)[0]

    def __call__(self, pixels: jax.Array, *, select_layer: int = -1, post_norm: bool = False,
                 hooks: Mapping[int, Hook] | None = None, interpolate_pos: bool = False) -> VisionOutput:
        """Encode tiles.

        Args:
          pixels: ``[N, H, W, C]`` normalised float images; rows / columns beyond a whole number of
            patches are dropped (HF "valid" patch convolution).
          select_layer: HF ``hidden_states`` index in ``[-(L+1), L]``; layers after it are not run.
          post_norm: apply the final norm as HF ``last_hidden_state`` does for the family
            (SigLIP / InternVL without mean pooling: LayerNorm; CLIP, InternVL default: identity).
          hooks: ``{i: f}`` applies ``f`` to the full sequence ``[N, T, D]`` right after layer ``i``
            (0-based); every ``i`` must be a layer that runs for ``select_layer``.
          interpolate_pos: allow another resolution than ``cfg.image_size`` (bicubic pos-emb resize).
        Returns:
          :class:`VisionOutput` with ``patches [N, P, D]`` and ``cls [N, D] | None``.
        """
        n_states = self.cfg.layers + 1
        if not -n_states <= select_layer < n_states:
            raise ValueError(f"select_layer={select_layer} outside [{-n_states}, {n_states - 1}] "
                             f"for a {self.cfg.layers}-layer ViT")
        stop = select_layer % n_states
        hooks = {operator.index(i): f for i, f in (hooks or {}).items()}
        bad = sorted(i for i in hooks if not 0 <= i < stop)
        if bad:
            raise ValueError(f"hooks after layers {bad} never run: select_layer={select_layer} runs layers "
                             f"0..{stop - 1}")
        x = self.embed(pixels, interpolate_pos=interpolate_pos)
        start = 0
        for i in sorted(hooks):
            x = self.run_layers(x, start, i + 1)
            x = constrain(hooks[i](x), ACT_AXES)
            start = i + 1
        x = self.run_layers(x, start, stop)
        if post_norm and self.cfg.final_norm == "tokens":
            x = self.final_norm(x)
        if self.cfg.cls_token:
            return VisionOutput(patches=x[:, 1:], cls=x[:, 0])
        return VisionOutput(patches=x, cls=None)

    def pool(self, out: VisionOutput) -> jax.Array:
        """Pooled image embedding ``[N, D]`` from a ``post_norm=True`` output (HF ``pooler_output``):
        SigLIP MAP head over the patches, or CLIP's final LayerNorm of the CLS token."""
        if self.head is not None:
            return self.head(out.patches)
        if self.cfg.final_norm == "cls":
            return self.final_norm(out.cls)
        raise ValueError("this ViT has no pooling head (needs map_head=True or final_norm='cls')")
