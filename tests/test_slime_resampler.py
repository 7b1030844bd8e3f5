"""SliME perceiver resampler against a PyTorch reference built here from torch.nn.MultiheadAttention,
torch.nn.LayerNorm and torch.nn.functional.interpolate (spec/methods.md §6.3)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from tests.slime_helpers import randomize_params
from vlm_jax.hires.slime import Resampler, ResamplerConfig
from vlm_jax.hires.slime.resampler import position_tables

DIM, HEADS = 32, 4


def formula_sincos_2d(dim: int, grid: int) -> np.ndarray:
    """The MAE / Qwen-VL table from its formula: meshgrid(w, h), first half from grid[0], second from grid[1]."""
    mesh = np.stack(np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)))

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float32) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(dim // 2, mesh[0]), one(dim // 2, mesh[1])], axis=1)


def torch_key_pos(table: torch.Tensor, grid: int, hw) -> torch.Tensor:
    resized = torch.nn.functional.interpolate(table.float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2),
                                              size=hw, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).flatten(0, 2).to(table.dtype)


def torch_reference(module: Resampler, x: np.ndarray, hw, fp16: bool) -> np.ndarray:
    """Qwen-VL / SliME Resampler forward in torch with the JAX module's weights."""
    g = module.cfg.grid
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    table = t(formula_sincos_2d(DIM, g)).to(torch.float16 if fp16 else torch.float32)
    pos_k = torch_key_pos(table, g, hw)
    mha = torch.nn.MultiheadAttention(DIM, HEADS)
    lns = {name: torch.nn.LayerNorm(DIM, eps=1e-6) for name in ("ln_q", "ln_kv", "ln_post")}
    with torch.no_grad():
        projections = [getattr(module.attn, n) for n in ("q", "k", "v")]  # kernels [D, H, Dh], biases [H, Dh]
        mha.in_proj_weight.copy_(torch.cat([t(proj.kernel[...]).reshape(DIM, DIM).T for proj in projections]))
        mha.in_proj_bias.copy_(torch.cat([t(proj.bias[...]).flatten() for proj in projections]))
        mha.out_proj.weight.copy_(t(module.attn.out.kernel[...]).reshape(DIM, DIM).T)
        mha.out_proj.bias.copy_(t(module.attn.out.bias[...]))
        for name, ln in lns.items():
            ln.weight.copy_(t(getattr(module, name).scale[...]))
            ln.bias.copy_(t(getattr(module, name).bias[...]))
        kv = lns["ln_kv"](t(x)).permute(1, 0, 2)
        q = lns["ln_q"](t(module.query[...])).unsqueeze(1).repeat(1, kv.shape[1], 1)
        out = mha(q + table.unsqueeze(1), kv + pos_k.unsqueeze(1), kv)[0].permute(1, 0, 2)
        return lns["ln_post"](out).numpy()


@pytest.mark.parametrize("grid,hw,fp16", [(2, (4, 4), True), (2, (4, 4), False), (4, (4, 4), True),
                                          (4, (3, 5), False), (3, (2, 6), True)])
def test_matches_torch_multihead_attention(grid, hw, fp16):
    module = Resampler(ResamplerConfig(grid=grid, num_heads=HEADS, pos_fp16=fp16), DIM, rngs=nnx.Rngs(0))
    randomize_params(module, seed=grid)
    x = np.random.default_rng(1).normal(size=(3, hw[0] * hw[1], DIM)).astype(np.float32)
    got = np.asarray(module(jnp.asarray(x), hw))
    assert got.shape == (3, grid * grid, DIM)
    np.testing.assert_allclose(got, torch_reference(module, x, hw, fp16), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("grid,hw", [(2, (4, 4)), (12, (24, 24)), (4, (3, 7)), (5, (5, 5))])
def test_position_tables_match_formula_and_torch_bicubic(grid, hw):
    dim = 16
    table, keys = position_tables(dim, grid, hw, False)
    np.testing.assert_allclose(table, formula_sincos_2d(dim, grid), rtol=0, atol=1e-6)
    ref = torch_key_pos(torch.from_numpy(formula_sincos_2d(dim, grid)), grid, hw).numpy()
    np.testing.assert_allclose(keys, ref, rtol=0, atol=1e-5)


def test_leading_dims_and_batch_independence():
    module = Resampler(ResamplerConfig(grid=2, num_heads=HEADS), DIM, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 16, DIM)), jnp.float32)
    out = module(x, (4, 4))
    assert out.shape == (2, 3, 4, DIM)
    np.testing.assert_allclose(np.asarray(out[1, 2]), np.asarray(module(x[1, 2], (4, 4))), rtol=1e-6, atol=1e-6)


def test_init_follows_torch_defaults():
    module = Resampler(ResamplerConfig(grid=24, num_heads=8), 256, rngs=nnx.Rngs(0))
    query = np.asarray(module.query[...])
    assert abs(query.std() - 0.02) < 1e-3
    bound = np.sqrt(6.0 / (4 * 256))  # xavier-uniform on the fused [3E, E] in-projection
    kernel = np.asarray(module.attn.k.kernel[...])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    out_kernel = np.asarray(module.attn.out.kernel[...])
    assert np.abs(out_kernel).max() <= 1 / 16 and np.abs(out_kernel).max() > 0.95 / 16
    assert not np.asarray(module.attn.q.bias[...]).any() and not np.asarray(module.attn.out.bias[...]).any()


def test_bad_shapes_fail_loudly():
    module = Resampler(ResamplerConfig(grid=2, num_heads=HEADS), DIM, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected"):
        module(jnp.zeros((1, 15, DIM)), (4, 4))
    with pytest.raises(ValueError, match="num_heads"):
        Resampler(ResamplerConfig(grid=2, num_heads=5), DIM, rngs=nnx.Rngs(0))
