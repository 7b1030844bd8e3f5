"""INF-LLaVA's official checkpoint layout: the original LLaVA keys plus ``model.spatial_embed.*`` (spec/methods.md
§5.2), imported with ``load_vlm_from_hf_dir``.

A tiny checkpoint in that layout (the LLaVA part rewritten from a perturbed transformers LLaVA as in
``test_llava_original_parity.py``, random ``SpatialEmbed`` tensors under the official names) is imported; then our
DEM on random views must equal a torch re-statement of the official ``SpatialEmbed.forward`` followed by the
code's mean with the low-res view (§5.2 steps 1-7; float32, max |Δ| ≤ 1e-5 · max |ref|), run on the checkpoint's
own tensors, and the LLaVA towers keep their logit parity with transformers.
"""

import json
import math

import hf_builders as hb
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as T
from flax import nnx
from test_llava_original_parity import original_config, original_tensors, write_original

from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir, vlm_config_from_hf
from vlm_jax.interop.mappings.inf_llava import OFFICIAL_DEM

D, HEADS, N = hb.CLIP_V["hidden_size"], 8, 3
SIDE = hb.CLIP_V["image_size"] // hb.CLIP_V["patch_size"]  # patches per view side


def spatial_embed_tensors(seed: int) -> dict[str, torch.Tensor]:
    """``SpatialEmbed(channel=D)``'s state dict (official names) with random values."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {**{f"attention.linears.{i}.{p}": (D, D) if p == "weight" else (D,) for i in range(4)
                 for p in ("weight", "bias")},
              "attention.ln.weight": (D,), "attention.ln.bias": (D,), "ln_fuse.weight": (D,), "ln_fuse.bias": (D,)}
    for ffn in ("ffn_crop", "ffn_stride"):
        shapes.update({f"{ffn}.0.weight": (D // 16, D), f"{ffn}.0.bias": (D // 16,),
                       f"{ffn}.2.weight": (D // 2, D // 16), f"{ffn}.2.bias": (D // 2,)})
    return {f"model.spatial_embed.{k}": 0.3 * torch.randn(s, generator=gen) + (k.endswith("ln.weight") or
                                                                              k == "ln_fuse.weight")
            for k, s in shapes.items()}


def reference_dem(t: dict[str, torch.Tensor], views: torch.Tensor) -> torch.Tensor:
    """§5.2 on ``views [B, 2n²+1, h·w, D]`` (n² contiguous crops, n² strided phases h-major, low-res view)."""
    p = {k[len("model.spatial_embed."):]: v.double() for k, v in t.items()}
    b, _, hw, d = views.shape
    h = w = math.isqrt(hw)
    feats = views.double().reshape(b, -1, h, w, d)

    def linear(name, x):
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def attention(query, context):  # [b, T, d] each; one shared module, post-norm on out + query
        dk = d // HEADS
        q, k, v = (linear(f"attention.linears.{i}", x).view(b, -1, HEADS, dk).transpose(1, 2)
                   for i, x in enumerate((query, context, context)))
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dk), dim=-1) @ v
        out = linear("attention.linears.3", a.transpose(1, 2).reshape(b, -1, d)) + query
        return F.layer_norm(out, (d,), p["attention.ln.weight"], p["attention.ln.bias"])

    crop_map = torch.cat([torch.cat([feats[:, r * N + c] for c in range(N)], dim=2) for r in range(N)], dim=1)
    stride_map = torch.zeros(b, N * h, N * w, d, dtype=torch.float64)
    for i in range(N):
        for j in range(N):
            stride_map[:, i::N, j::N] = feats[:, N * N + i * N + j]
    glo, loc = torch.zeros_like(crop_map), torch.zeros_like(crop_map)
    for r in range(N):  # global as query: contiguous blocks
        for c in range(N):
            block = (slice(None), slice(r * h, (r + 1) * h), slice(c * w, (c + 1) * w))
            glo[block] = attention(stride_map[block].reshape(b, hw, d), crop_map[block].reshape(b, hw, d)).view(
                b, h, w, d)
    for i in range(N):  # local as query: strided sub-maps
        for j in range(N):
            sub = (slice(None), slice(i, None, N), slice(j, None, N))
            loc[sub] = attention(crop_map[sub].reshape(b, hw, d), stride_map[sub].reshape(b, hw, d)).view(b, h, w, d)

    def ffn(name, x):
        return linear(f"{name}.2", F.gelu(linear(f"{name}.0", x)))

    fused = F.layer_norm(torch.cat([ffn("ffn_crop", loc), ffn("ffn_stride", glo)], -1) + glo + loc, (d,),
                         p["ln_fuse.weight"], p["ln_fuse.bias"])
    down = F.interpolate(fused.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
    return (views[:, -1].double() + down.permute(0, 2, 3, 1).reshape(b, hw, d)) / 2


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inf_llava")
    clip_dir = tmp / "clip"
    T.CLIPVisionConfig(**hb.CLIP_V).save_pretrained(clip_dir)
    hf = hb.build_llava(seed=13)
    tensors = {**original_tensors(hf), **spatial_embed_tensors(13)}
    config = original_config(str(clip_dir))
    return dict(path=write_original(tmp / "official", tensors, config), tensors=tensors, config=config, hf=hf)


def test_spatial_embed_matches_the_official_forward(case):
    model = load_vlm_from_hf_dir(case["path"], image_token_id=hb.IMG_TOK)
    cfg = model.cfg
    assert (cfg.dem, cfg.max_views, cfg.global_view) == (OFFICIAL_DEM, 2 * N * N + 1, "last")
    views = torch.randn(2, 2 * N * N + 1, SIDE * SIDE, D, generator=torch.Generator().manual_seed(0))
    ours = np.asarray(nnx.jit(lambda m, v: m(v, grid_hw=(SIDE, SIDE), n_rows=N, n_cols=N))(
        model.dem, jnp.asarray(views.numpy())))
    ref = reference_dem(case["tensors"], views).numpy()
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert scale > 0.5 and err <= 1e-5 * scale, f"max |Δ| {err:.3g} vs {scale:.3g}"
    np.testing.assert_array_equal(np.asarray(model.projector.linear_2.bias[...]),
                                  case["tensors"]["model.mm_projector.2.bias"].numpy())


def test_swapped_ffns_break_the_match_and_stray_tensors_are_named(case, tmp_path):
    tensors = dict(case["tensors"])
    for p in ("0.weight", "0.bias", "2.weight", "2.bias"):
        crop, stride = f"model.spatial_embed.ffn_crop.{p}", f"model.spatial_embed.ffn_stride.{p}"
        tensors[crop], tensors[stride] = case["tensors"][stride], case["tensors"][crop]
    model = load_vlm_from_hf_dir(write_original(tmp_path / "swapped", tensors, case["config"]),
                                 image_token_id=hb.IMG_TOK)
    views = torch.randn(1, 2 * N * N + 1, SIDE * SIDE, D, generator=torch.Generator().manual_seed(1))
    ours = np.asarray(model.dem(jnp.asarray(views.numpy()), grid_hw=(SIDE, SIDE), n_rows=N, n_cols=N))
    assert np.abs(ours - reference_dem(case["tensors"], views).numpy()).max() > 1e-3
    stray = {**case["tensors"], "model.spatial_embed.attention.linears.4.weight": torch.zeros(D, D)}
    with pytest.raises(CheckpointError, match=r"spatial_embed\.attention\.linears\.4"):
        load_vlm_from_hf_dir(write_original(tmp_path / "stray", stray, case["config"]), image_token_id=hb.IMG_TOK)


def test_the_family_is_recognised_by_its_tensors():
    config = json.loads(json.dumps(original_config("openai/clip-vit-large-patch14-336", mm_hidden_size=1024)))
    plain = vlm_config_from_hf(config, image_token_id=hb.IMG_TOK)
    official = vlm_config_from_hf(config, image_token_id=hb.IMG_TOK,
                                  tensor_names=["model.spatial_embed.ln_fuse.weight", "model.norm.weight"])
    assert plain.dem is None and official.dem == OFFICIAL_DEM and official.max_views == 19
