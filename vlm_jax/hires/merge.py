"""Laying out visual tokens for the LLM with static shapes: flat, LLaVA-NeXT anyres unpad + newline,
and the scatter of visual tokens into the text embeddings at ``image_slots``.

All layouts produce ``tokens [B, V, D]`` plus ``valid [B, V]`` with the valid tokens *first* (a
prefix). The anyres token counts are pure integer functions shared with the host
(:mod:`vlm_jax.stages.anyres`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vlm_jax.stages.anyres import anyres_capacity, anyres_geometry, anyres_num_tokens

__all__ = ["anyres_capacity", "anyres_geometry", "anyres_num_tokens", "anyres_tokens", "flat_tokens", "scatter_visual"]


def flat_tokens(tokens: jax.Array, tile_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Tiles in view order, concatenated: ``[B, N, T, D]`` → ``[B, N·T, D]``, ``valid [B, N·T]``.

    Padded tiles sit at the end of each example (``vlm_jax.tiling.pad_views``), so valid tokens are a prefix.
    """
    b, n, t, d = tokens.shape
    valid = jnp.repeat(tile_mask, t, axis=1)
    return tokens.reshape(b, n * t, d), valid


def anyres_tokens(tokens: jax.Array, grid: jax.Array, orig_size: jax.Array, newline: jax.Array | None,
                  side: int, capacity: int) -> tuple[jax.Array, jax.Array]:
    """LLaVA-NeXT ``spatial_unpad`` layout with static shapes.

    Args:
      tokens: ``[B, N, side², D]`` per-view tokens, view 0 the global (base) image, views ``1..`` the grid
        tiles in row-major order.
      grid: ``int [B, 2]`` (rows, cols); orig_size: ``int [B, 2]`` (height, width).
      newline: ``[D]`` learned ``image_newline`` appended after every row, or None.
      capacity: static output length (see :func:`anyres_capacity`).
    Returns: ``tokens [B, capacity, D]`` (base tokens, then the unpadded map row by row) and ``valid``.
    """
    b, n, t, d = tokens.shape
    rows_g, cols_g = grid[:, 0:1], grid[:, 1:2]
    kept_r, kept_c, off_r, off_c = anyres_geometry(rows_g, cols_g, orig_size[:, 0:1], orig_size[:, 1:2], side)
    k = jnp.arange(capacity)[None, :]
    j = k - t
    width = kept_c + (1 if newline is not None else 0)
    row, col = j // width, j % width
    src_r, src_c = row + off_r, col + off_c
    tile = 1 + (src_r // side) * cols_g + src_c // side
    flat = jnp.where(k < t, k, tile * t + (src_r % side) * side + src_c % side)
    is_grid = (k >= t) & (row < kept_r)
    is_newline = is_grid & (col == kept_c)
    valid = (k < t) | is_grid
    flat = jnp.clip(jnp.where(valid & ~is_newline, flat, 0), 0, n * t - 1)
    out = jnp.take_along_axis(tokens.reshape(b, n * t, d), flat[..., None], axis=1)
    if newline is not None:
        out = jnp.where(is_newline[..., None], newline.astype(out.dtype), out)
    out = jnp.where(valid[..., None], out, 0)
    return out, valid


def scatter_visual(embeds: jax.Array, image_slots: jax.Array, visual: jax.Array,
                   visual_valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Put the valid visual tokens into the *last* image slots of each example, in order.

    Args: ``embeds [B, L, D]`` text embeddings; ``image_slots bool [B, L]`` (one contiguous span per example);
      ``visual [B, V, D]`` with ``visual_valid [B, V]`` a prefix mask.
    Returns: new embeddings and ``filled [B, L]`` — image slots that received a token. With fewer valid visual
      tokens ``n`` than slots ``S`` (e.g. after SliME's text-guided selection), the first ``S - n`` slots stay
      unfilled and the caller masks them: right-aligning keeps the token before the text that follows the image
      a real visual token, so every text token is predicted from a real position (the ``plain`` template puts
      the answer right after the image), exactly as with a prompt of ``n`` slots.
    """
    rank = jnp.cumsum(image_slots, axis=1) - 1
    n_vis = visual_valid.sum(axis=1, keepdims=True)
    unfilled = image_slots.sum(axis=1, keepdims=True) - n_vis
    idx = jnp.clip(rank - unfilled, 0, visual.shape[1] - 1)
    gathered = jnp.take_along_axis(visual, idx[..., None], axis=1).astype(embeds.dtype)
    filled = image_slots & (rank >= unfilled)
    return jnp.where(filled[..., None], gathered, embeds), filled
