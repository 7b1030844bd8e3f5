"""SliME's official checkpoint layout (``GatedBlock`` as ``model.mm_projector.*``, ``TextGuidedSampler`` as
``model.sampler.post_qformer.*``, spec/methods.md §6.3-§6.4) imported with ``load_vlm_from_hf_dir``.

A tiny checkpoint in that layout: the towers rewritten from a perturbed transformers LLaVA (as in
``test_llava_original_parity.py``), random resampler / gate tensors under the official names, the sin-cos
``pos_embed`` tables stored in float16 as the code stores them, ``w_gate`` / ``w_noise`` in bfloat16. Our two
resamplers must equal a torch forward of the official ``Resampler`` (``nn.MultiheadAttention`` + ``LayerNorm``
loaded with the checkpoint's tensors, the stored position tables; max |Δ| ≤ 1e-5 · max |ref|), the gate and the
shared MLP must be the checkpoint's tensors exactly, and the towers keep their logit parity with transformers.
"""

import json

import hf_builders as hb
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
import transformers as T
from flax import nnx
from test_llava_original_parity import _check_logits, original_config, original_tensors
from test_slime_resampler import formula_sincos_2d, torch_key_pos

from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir, vlm_config_from_hf
from vlm_jax.nn.attention import causal_mask

DV = 256  # mm_hidden_size: the code's resamplers have DV // 128 = 2 heads
CLIP = dict(hidden_size=DV, intermediate_size=2 * DV, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8)
SIDE, LOCAL = 4, 2  # patch grid of a view (global resampler 4² queries), mm_resampler_dim = LOCAL²
SLIME_FIELDS = dict(mm_projector_type="gated", mm_hidden_size=DV, mm_resampler_type="cosine",
                    mm_resampler_dim=LOCAL * LOCAL, mm_resampler_topp=0.95, mm_resampler_temp=1.0,
                    mm_learnable_gated=-1, seperator=5, image_aspect_ratio="anyres")


def resampler_tensors(prefix: str, grid: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    def rnd(*shape, base=0.0):
        return base + 0.3 * torch.randn(shape, generator=gen)

    out = {"query": rnd(grid * grid, DV), "pos_embed": torch.from_numpy(formula_sincos_2d(DV, grid)).half(),
           "attn.in_proj_weight": rnd(3 * DV, DV), "attn.in_proj_bias": rnd(3 * DV),
           "attn.out_proj.weight": rnd(DV, DV), "attn.out_proj.bias": rnd(DV)}
    for ln in ("ln_q", "ln_kv", "ln_post"):
        out.update({f"{ln}.weight": rnd(DV, base=1.0), f"{ln}.bias": rnd(DV)})
    return {prefix + k: v for k, v in out.items()}


def official_tensors(hf) -> dict[str, torch.Tensor]:
    tensors = {k.replace("model.mm_projector.", "model.mm_projector.projection."): v
               for k, v in original_tensors(hf).items()}
    gen = torch.Generator().manual_seed(17)
    tensors.update(resampler_tensors("model.mm_projector.attn.", SIDE, gen))
    tensors.update(resampler_tensors("model.sampler.post_qformer.", LOCAL, gen))
    tensors.update({"model.mm_projector.w_gate": torch.randn(DV, 2, generator=gen).bfloat16(),
                    "model.mm_projector.w_noise": torch.randn(DV, 2, generator=gen).bfloat16(),
                    "model.mm_projector.mean": torch.zeros(1).bfloat16(),
                    "model.mm_projector.std": torch.ones(1).bfloat16()})
    return tensors


def official_resampler(t: dict[str, torch.Tensor], prefix: str, grid: int, x: torch.Tensor) -> np.ndarray:
    """The official ``Resampler.forward`` on ``x [B, SIDE², DV]`` with the checkpoint's tensors."""
    mha = torch.nn.MultiheadAttention(DV, DV // 128)
    lns = {n: torch.nn.LayerNorm(DV, eps=1e-6) for n in ("ln_q", "ln_kv", "ln_post")}
    mha.load_state_dict({k[len(prefix + "attn."):]: v for k, v in t.items() if k.startswith(prefix + "attn.")})
    for n, ln in lns.items():
        ln.load_state_dict({"weight": t[f"{prefix}{n}.weight"], "bias": t[f"{prefix}{n}.bias"]})
    table = t[prefix + "pos_embed"]
    key_pos = torch_key_pos(table, grid, (SIDE, SIDE)).double()  # interpolated in float32, stored as float16
    for m in (mha, *lns.values()):  # float64: the comparison measures our float32 error only
        m.double()
    with torch.no_grad():
        kv = lns["ln_kv"](x.double()).permute(1, 0, 2)
        q = lns["ln_q"](t[prefix + "query"].double()).unsqueeze(1).repeat(1, x.shape[0], 1)
        out = mha(q + table.double().unsqueeze(1), kv + key_pos.unsqueeze(1), kv)[0]
        return lns["ln_post"](out.permute(1, 0, 2)).numpy()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slime")
    T.CLIPVisionConfig(**CLIP).save_pretrained(tmp / "clip")
    torch.manual_seed(17)
    hf = hb.perturb(T.LlavaForConditionalGeneration(T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**CLIP), text_config=T.LlamaConfig(**hb.TEXT), image_token_index=hb.IMG_TOK,
        vision_feature_layer=-2)), seed=17)
    tensors = official_tensors(hf)
    config = original_config(str(tmp / "clip"), **SLIME_FIELDS)
    path = tmp / "official"
    path.mkdir()
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return dict(path=str(path), tensors=tensors, config=config, hf=hf)


def test_resamplers_gate_and_mlp_are_the_official_ones(case):
    model = load_vlm_from_hf_dir(case["path"], image_token_id=hb.IMG_TOK)
    s = model.cfg.slime
    assert (s.global_grid, s.local_grid, s.num_heads, s.separator, s.separator_token_id, s.top_p) == (
        SIDE, LOCAL, 2, "token", 5, 0.95)
    assert (model.cfg.max_views, model.cfg.global_view) == (8, "first")
    t = case["tensors"]
    x = torch.randn(3, SIDE * SIDE, DV, generator=torch.Generator().manual_seed(0))
    for module, prefix, grid in ((model.slime.projector.resampler, "model.mm_projector.attn.", SIDE),
                                 (model.slime.sampler, "model.sampler.post_qformer.", LOCAL)):
        ours = np.asarray(nnx.jit(lambda m, v: m(v, (SIDE, SIDE)))(module, jnp.asarray(x.numpy())))
        ref = official_resampler(t, prefix, grid, x)
        err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
        assert scale > 0.5 and err <= 1e-5 * scale, f"{prefix}: max |Δ| {err:.3g} vs {scale:.3g}"
    projector = model.slime.projector
    np.testing.assert_array_equal(projector.w_gate[...], t["model.mm_projector.w_gate"].float().numpy())
    np.testing.assert_array_equal(projector.w_noise[...], t["model.mm_projector.w_noise"].float().numpy())
    np.testing.assert_array_equal(projector.mlp.linear_1.kernel[...],
                                  t["model.mm_projector.projection.0.weight"].numpy().T)
    np.testing.assert_array_equal(projector.mlp.linear_2.bias[...], t["model.mm_projector.projection.2.bias"].numpy())


def test_towers_keep_parity_with_transformers(case):
    model = load_vlm_from_hf_dir(case["path"], image_token_id=hb.IMG_TOK)
    rng = np.random.default_rng(17)
    ids, mask = hb.pad_right([hb.prompt(0, 9, rng), hb.prompt(0, 4, rng)], 12)  # text only: towers, no connector
    with torch.no_grad():
        ref = case["hf"].model.language_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        ref = case["hf"].lm_head(ref.last_hidden_state).numpy()
    valid = jnp.asarray(mask)
    hidden, _ = model.llm(model.llm.embed(jnp.asarray(ids, jnp.int32)),
                          positions=jnp.broadcast_to(jnp.arange(12), (2, 12)), mask=causal_mask(valid))
    _check_logits(np.asarray(model.llm.logits(hidden)), ref, mask)
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = case["hf"].model.vision_tower(pixel_values=px, output_hidden_states=True).hidden_states[-2][:, 1:]
    ours = model.vision(jnp.asarray(px.numpy().transpose(0, 2, 3, 1)), select_layer=-2).patches
    _check_logits(np.asarray(ours), feats.numpy(), np.ones(feats.shape[:2], bool))


def test_refusals_and_stray_tensors(case, tmp_path):
    for change, message in ((dict(mm_resampler_type="qformer"), "mm_resampler_type"),
                            (dict(mm_resampler_dim=6), "mm_resampler_dim"),
                            (dict(mm_patch_merge_type="spatial_unpad"), "newline")):
        with pytest.raises(ValueError, match=message):
            vlm_config_from_hf({**case["config"], **change}, image_token_id=hb.IMG_TOK)
    stray = {**case["tensors"], "model.sampler.selector.query": torch.zeros(1, DV)}
    safetensors.torch.save_file({k: v.contiguous() for k, v in stray.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(case["config"]))
    with pytest.raises(CheckpointError, match=r"sampler\.selector\.query"):
        load_vlm_from_hf_dir(str(tmp_path), image_token_id=hb.IMG_TOK)
