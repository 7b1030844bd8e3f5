"""ViT config, position-embedding resize, presets, sharding and remat (references: torch, HF configs)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers as T
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax.interop.hf_vision import empty_vit, vit_config_from_hf
from vlm_jax.nn.posemb import interpolate_pos_embed, resize_grid
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.sharding import make_mesh, state_shardings, use_mesh
from vlm_jax.vision.config import ViTConfig, clip_l14_336, internvit_300m_448, siglip_so400m_14_384
from vlm_jax.vision.vit import ViT

TINY = ViTConfig(hidden=32, layers=2, heads=2, mlp=64, patch=4, image_size=32, act="gelu", cls_token=True,
                 layer_scale=True, qk_norm=True)


def _create(cfg: ViTConfig, seed: int = 0):
    """(graphdef, state) created in one compiled computation."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(seed))))
    state = jax.jit(lambda: nnx.split(ViT(cfg, rngs=nnx.Rngs(seed)))[1])()
    return graphdef, abstract, state


def _graphdef(cfg: ViTConfig, dtypes: Dtypes = FLOAT32):
    return nnx.split(nnx.eval_shape(lambda: ViT(cfg, dtypes=dtypes, rngs=nnx.Rngs(0))))[0]


def test_config_rejects_unknown_and_invalid_values():
    with pytest.raises(ValueError, match="hiden"):
        ViTConfig.from_dict(dict(hiden=32, layers=2, heads=2, mlp=64, patch=4, image_size=32, act="gelu"))
    with pytest.raises(ValueError, match="qk_nrom"):
        TINY.replace(qk_nrom=True)
    with pytest.raises(ValueError, match="precision policy"):  # dtypes are not a tower setting
        TINY.replace(dtype="bfloat16")
    with pytest.raises(ValueError, match="act"):
        TINY.replace(act="swish2")
    with pytest.raises(ValueError, match="divisible"):
        TINY.replace(heads=5)
    with pytest.raises(ValueError, match="smaller than patch"):
        TINY.replace(image_size=3)
    with pytest.raises(ValueError, match="final_norm"):
        TINY.replace(final_norm="post")


@pytest.mark.parametrize("src,dst", [((8, 8), (12, 10)), ((8, 8), (5, 3)), ((6, 4), (7, 9))])
def test_resize_grid_matches_torch_bicubic(src, dst):
    grid = np.random.default_rng(0).normal(size=(*src, 5)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(grid).permute(2, 0, 1)[None], size=dst,
                                          mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(np.asarray(resize_grid(jnp.asarray(grid), dst)), ref, rtol=1e-5, atol=1e-5)


def test_interpolate_pos_embed_identity_and_cls_kept():
    table = jnp.asarray(np.random.default_rng(1).normal(size=(1 + 16, 3)), jnp.float32)
    assert interpolate_pos_embed(table, (4, 4), (4, 4), has_cls=True) is table
    out = interpolate_pos_embed(table, (4, 4), (6, 2), has_cls=True)
    assert out.shape == (13, 3)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(table[0]))
    with pytest.raises(ValueError, match="rows"):
        interpolate_pos_embed(table, (4, 4), (6, 2), has_cls=False)


@pytest.mark.parametrize("preset,hf_config,kind,approx_params", [
    (clip_l14_336, lambda: T.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                              num_attention_heads=16, image_size=336, patch_size=14,
                                              hidden_act="quick_gelu", layer_norm_eps=1e-5), "clip", 303e6),
    (siglip_so400m_14_384, lambda: T.SiglipVisionConfig(hidden_size=1152, intermediate_size=4304,
                                                        num_hidden_layers=27, num_attention_heads=16,
                                                        image_size=384, patch_size=14), "siglip", 428e6),
    (internvit_300m_448, lambda: T.InternVLVisionConfig(hidden_size=1024, intermediate_size=4096,
                                                        num_hidden_layers=24, num_attention_heads=16,
                                                        image_size=448, patch_size=14, attention_bias=True),
     "internvl", 304e6),
])
def test_presets_match_hf_architecture(preset, hf_config, kind, approx_params):
    """Preset == config imported from the public HF config; parameter count == the HF model's."""
    hf = hf_config()
    assert vit_config_from_hf(hf.to_dict(), kind) == preset()
    with torch.device("meta"):
        hf_params = sum(p.numel() for p in getattr(T, type(hf).__name__.replace("Config", "Model"))(hf).parameters())
    ours = nnx.eval_shape(lambda: ViT(preset(), rngs=nnx.Rngs(0)))
    n = sum(math.prod(a.shape) for a in jax.tree.leaves(nnx.state(ours)))
    assert n == hf_params
    assert abs(n - approx_params) / approx_params < 0.01


def test_parameters_sharded_by_rules_and_forward_unchanged():
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    graphdef, abstract, state = _create(TINY)
    shardings = state_shardings(abstract, mesh)
    sharded = jax.jit(lambda: nnx.split(ViT(TINY, rngs=nnx.Rngs(0)))[1], out_shardings=shardings)()
    layers = sharded["encoder"]["layers"]
    expected = {
        ("attn", "q", "kernel"): P(None, "fsdp", "tensor", None),   # [L, D, H, Dh]
        ("attn", "out", "kernel"): P(None, "tensor", None, "fsdp"),  # [L, H, Dh, D]
        ("mlp", "fc1", "kernel"): P(None, "fsdp", "tensor"),         # [L, D, mlp]
        ("mlp", "fc2", "kernel"): P(None, "tensor", "fsdp"),         # [L, mlp, D]
        ("ls1",): P(None, None),
    }
    for path, spec in expected.items():
        leaf = layers
        for k in path:
            leaf = leaf[k]
        assert leaf[...].sharding.spec == spec, path
    assert sharded["pos_embed"][...].sharding.spec == P(None, "fsdp")
    assert sharded["patch_embed"]["kernel"][...].sharding.spec == P(None, "fsdp")

    px = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    fwd = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, select_layer=-2).patches)
    ref = fwd(state, px)
    with use_mesh(mesh):
        out = fwd(sharded, jax.device_put(px, NamedSharding(mesh, P(("data", "fsdp")))))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_remat_and_bfloat16():
    graphdef, _, state = _create(TINY)
    px = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))

    def loss(graphdef, s):
        return jnp.sum(nnx.merge(graphdef, s)(px).patches.astype(jnp.float32) ** 2)

    remat_graphdef = _graphdef(TINY.replace(remat="full"))
    g_ref = jax.jit(jax.grad(lambda s: loss(graphdef, s)))(state)
    g_remat = jax.jit(jax.grad(lambda s: loss(remat_graphdef, s)))(state)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_remat)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)

    bf16_graphdef = _graphdef(TINY, Dtypes(params="float32", compute="bfloat16"))
    f32 = jax.jit(lambda s: nnx.merge(graphdef, s)(px).patches)(state)
    bf16 = jax.jit(lambda s: nnx.merge(bf16_graphdef, s)(px).patches)(state)
    assert bf16.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(bf16.astype(jnp.float32) - f32)) / jnp.max(jnp.abs(f32))) < 5e-2


def test_bad_inputs_fail_early():
    vit = empty_vit(TINY)
    with pytest.raises(ValueError, match="select_layer"):
        vit(jnp.zeros((1, 32, 32, 3)), select_layer=3)
    with pytest.raises(ValueError, match="smaller than the patch"):
        vit(jnp.zeros((1, 3, 32, 3)))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        vit(jnp.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="pooling"):
        vit.pool(vit(jnp.zeros((1, 32, 32, 3)), select_layer=0))
