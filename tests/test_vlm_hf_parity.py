"""Whole-VLM logit parity with transformers' LLaVA-1.5, LLaVA-NeXT and InternVL (spec/parity.md §1).

Tiny random, perturbed HF models (``tests/hf_builders.py``) are saved with ``save_pretrained``, imported
with ``vlm_jax.interop.hf_vlm`` and run on a right-padded Batch built from the same inputs. LLaVA-NeXT
batches mix grids and unpadding directions in ONE batch of ours (HF runs them one by one); InternVL
mixes a 1-tile and a 2-tile + thumbnail image. Tolerance: float32, max |Δ| ≤ 1e-4 · max |ref| on valid
positions. The three checkpoint key schemes (parity.md §1.3) must give identical logits.
"""

import dataclasses
import json
import os
import shutil

import hf_builders as hb
import jax
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx
from safetensors import safe_open
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

from vlm_jax.hires.gswa import GSWAConfig
from vlm_jax.interop.checkpoint_io import CheckpointError
from vlm_jax.interop.hf_vlm import load_base_weights, load_vlm_from_hf_dir, vlm_config_from_hf
from vlm_jax.model import VLM

REL_TOL = 1e-4
INTERNVL_MAX_VIEWS = 4
# LLaVA-NeXT batches of two (H, W) images: grids 1x2 / 2x1 (unpad rows / cols), 2x2 / 1x3, 3x1 / 1x2.
NEXT_SIZES = [((30, 64), (64, 30)), ((50, 50), (20, 90)), ((90, 21), (17, 31))]
NEXT_LEN = 380  # ≥ 1 + anyres capacity (352) + text: one compiled shape for every LLaVA-NeXT batch


@nnx.jit
def _logits(model, batch):
    return model(batch)


def _n_features(hf, **kw) -> list[int]:
    """Visual tokens per image according to HF ``get_image_features``."""
    with torch.no_grad():
        feats = hf.model.get_image_features(**kw).pooler_output
    return [int(np.prod(f.shape[:-1])) for f in feats]


def _save(hf, path) -> dict:
    """``save_pretrained`` directory and the v5 in-memory state dict (``model.…``, ``lm_head.weight``)."""
    hf.save_pretrained(path)
    return dict(path=str(path), in_memory={k: v.numpy() for k, v in hf.state_dict().items()})


def _llava_case(tmp, **config):
    """Two images in one HF batch; the second prompt is shorter (right padding)."""
    hf = hb.build_llava(seed=1, **config)
    rng = np.random.default_rng(1)
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    counts = _n_features(hf, pixel_values=px)
    ids, mask = hb.pad_right([hb.prompt(counts[0], 9, rng), hb.prompt(counts[1], 4, rng)], 80)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px).logits.numpy()
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=1)
    return dict(**_save(hf, tmp), batches=[(batch, ref, counts, [(1, 1)] * 2)], overrides={})


def _llava_next_case(tmp):
    """For each size pair: HF per image (pixel_values [1, 1+r·c, 3, 32, 32]); ours one batch of two."""
    hf = hb.build_llava_next(seed=2)
    rng = np.random.default_rng(2)
    batches = []
    for sizes in NEXT_SIZES:
        rows, views, refs, counts, grids = [], [], [], [], []
        for size in sizes:
            grid = tuple(int(g) for g in get_anyres_image_grid_shape(size, hb.PINPOINTS, 32))
            px = torch.randn(1, 1 + grid[0] * grid[1], 3, 32, 32, generator=torch.Generator().manual_seed(sum(size)))
            image_sizes = torch.tensor([size])
            (n,) = _n_features(hf, pixel_values=px, image_sizes=image_sizes)
            row = hb.prompt(n, int(rng.integers(3, 10)), rng)
            with torch.no_grad():
                refs.append(hf(input_ids=torch.tensor(row[None]), pixel_values=px, image_sizes=image_sizes).logits[0])
            rows.append(row), views.append(px[0].numpy()), counts.append(n), grids.append(grid)
        ids, mask = hb.pad_right(rows, NEXT_LEN)
        ref = np.zeros((2, NEXT_LEN, refs[0].shape[-1]), np.float32)
        for i, r in enumerate(refs):
            ref[i, :len(r)] = r.numpy()
        batch = hb.our_batch(ids, mask, views, max_views=5, grids=grids, orig_sizes=list(sizes))
        batches.append((batch, ref, counts, grids))
    return dict(**_save(hf, tmp), batches=batches, overrides={})


def _internvl_case(tmp):
    """Image 0: one tile; image 1: a 1x2 grid + thumbnail (3 tiles). HF takes the tiles flat."""
    hf = hb.build_internvl(seed=3)
    rng = np.random.default_rng(3)
    px = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    per_tile = _n_features(hf, pixel_values=px)  # one entry per tile
    counts = [per_tile[0], sum(per_tile[1:])]
    ids, mask = hb.pad_right([hb.prompt(counts[0], 11, rng), hb.prompt(counts[1], 5, rng)], 72)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px).logits.numpy()
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=INTERNVL_MAX_VIEWS,
                         grids=[(1, 1), (1, 2)])
    return dict(**_save(hf, tmp), batches=[(batch, ref, counts, [(1, 1), (1, 2)])],
                overrides=dict(max_views=INTERNVL_MAX_VIEWS))


CASES = {
    "llava": _llava_case,
    "llava_full_last_layer": lambda tmp: _llava_case(tmp, vision_feature_select_strategy="full",
                                                     vision_feature_layer=-1),  # CLS kept: 65 tokens
    "llava_next": _llava_next_case,
    "internvl": _internvl_case,
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in CASES.items()}


def _rewrite(src: str, dst, rename, source_tensors=None) -> str:
    """Copy ``config.json`` and write ``{rename(k): v}`` (numpy safetensors) into ``dst``."""
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), dst)
    if source_tensors is None:
        with safe_open(os.path.join(src, "model.safetensors"), "np") as f:
            source_tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {rename(k): v for k, v in source_tensors.items()}
    safetensors.numpy.save_file(tensors, os.path.join(dst, "model.safetensors"))
    return str(dst)


def _v4_hub(key: str) -> str:
    """v5 save_pretrained (mixed) → v4 hub naming: only the vision tower differs."""
    return "vision_tower.vision_model." + key[len("vision_tower."):] if key.startswith("vision_tower.") else key


def _check_logits(ours: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> None:
    err = np.abs(ours[mask] - ref[mask]).max()
    scale = np.abs(ref[mask]).max()
    assert scale > 0.5, "reference logits too small for a meaningful relative check"
    assert err <= REL_TOL * scale, f"max |Δlogits| {err:.3g} > {REL_TOL} · {scale:.3g}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match_transformers_for_all_key_schemes(name, cases, tmp_path):
    case = cases[name]
    in_memory = case["in_memory"]
    dirs = {
        "v5_saved": case["path"],
        "v4_hub": _rewrite(case["path"], tmp_path / "v4", _v4_hub),
        "v5_in_memory": _rewrite(case["path"], tmp_path / "mem", lambda k: k, in_memory),
    }
    assert any(k.startswith("model.vision_tower.") for k in in_memory) and "lm_head.weight" in in_memory
    results = {}
    for scheme, path in dirs.items():
        model = load_vlm_from_hf_dir(path, **case["overrides"])
        results[scheme] = []
        for batch, ref, counts, grids in case["batches"]:
            for i, (n, grid) in enumerate(zip(counts, grids)):  # host-side token count == HF's
                n_views = int(batch["tile_mask"][i].sum())
                assert model.cfg.num_image_tokens(n_views, grid, tuple(batch["orig_size"][i])) == n
            logits = np.asarray(_logits(model, batch))
            _check_logits(logits, ref, batch["valid"])
            results[scheme].append(logits)
    for scheme in ("v4_hub", "v5_in_memory"):
        for a, b in zip(results[scheme], results["v5_saved"]):
            np.testing.assert_array_equal(a, b)


def test_perturbed_tensor_changes_logits(cases, tmp_path):
    """The comparison can fail: one projector bias entry off by 0.05 breaks parity."""
    case = cases["llava"]

    def bump(k, v):
        return v + np.float32(0.05) * (np.arange(v.size) == 0) if k == "multi_modal_projector.linear_2.bias" else v

    with safe_open(os.path.join(case["path"], "model.safetensors"), "np") as f:
        tensors = {k: bump(k, f.get_tensor(k)).astype(np.float32) for k in f.keys()}
    model = load_vlm_from_hf_dir(_rewrite(case["path"], tmp_path / "bad", lambda k: k, tensors))
    batch, ref, _, _ = case["batches"][0]
    with pytest.raises(AssertionError, match="logits"):
        _check_logits(np.asarray(_logits(model, batch)), ref, batch["valid"])


EDITS = {
    "missing_vision": (lambda k, v: None if k == "vision_tower.encoder.layers.1.mlp.fc2.bias" else v,
                       "vision_tower.encoder.layers.1.mlp.fc2.bias"),
    "missing_projector": (lambda k, v: None if k == "multi_modal_projector.linear_1.weight" else v,
                          "multi_modal_projector.linear_1.weight"),
    "missing_newline": (lambda k, v: None if k == "image_newline" else v, "image_newline"),
    "missing_llm": (lambda k, v: None if k == "language_model.model.norm.weight" else v,
                    "language_model.model.norm.weight"),
    "wrong_shape_projector": (lambda k, v: v[:-1] if k == "multi_modal_projector.linear_2.bias" else v,
                              "multi_modal_projector.linear_2.bias"),
    "wrong_shape_newline": (lambda k, v: np.concatenate([v, v]) if k == "image_newline" else v, "image_newline"),
    # tower loaders name tensors relative to their tower (``vision_tower.`` / ``language_model.`` stripped)
    "wrong_shape_vision": (lambda k, v: v[:, :-1] if k == "vision_tower.embeddings.position_embedding.weight" else v,
                           "embeddings.position_embedding.weight"),
    "wrong_shape_llm": (lambda k, v: v[:-1] if k == "language_model.model.embed_tokens.weight" else v,
                        "model.embed_tokens.weight"),
}
EXTRAS = ["multi_modal_projector.linear_3.weight", "vision_tower.encoder.layers.2.mlp.fc1.bias",
          "language_model.model.layers.0.extra.weight", "unexpected_top_level.weight"]


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_missing_or_misshaped_tensor_is_named(edit, cases, tmp_path):
    src = cases["llava_next"]["path"]
    change, key = EDITS[edit]
    with safe_open(os.path.join(src, "model.safetensors"), "np") as f:
        tensors = {k: change(k, f.get_tensor(k)) for k in f.keys()}
    path = _rewrite(src, tmp_path / edit, lambda k: k, {k: v for k, v in tensors.items() if v is not None})
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_vlm_from_hf_dir(path)


@pytest.mark.parametrize("extra", EXTRAS)
def test_unexpected_tensor_is_named(extra, cases, tmp_path):
    src = cases["llava_next"]["path"]
    with safe_open(os.path.join(src, "model.safetensors"), "np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors[extra] = np.zeros((3,), np.float32)
    path = _rewrite(src, tmp_path / "extra", lambda k: k, tensors)
    with pytest.raises(CheckpointError, match=extra.replace(".", r"\.")):
        load_vlm_from_hf_dir(path)


def _config(path: str) -> dict:
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def test_config_mapping(cases):
    llava = vlm_config_from_hf(_config(cases["llava"]["path"]))
    assert (llava.layout, llava.max_views, llava.select_layer, llava.keep_cls) == ("flat", 1, -2, False)
    assert (llava.image_token_id, llava.projector.kind, llava.llm.tie_embeddings) == (hb.IMG_TOK, "mlp2x_gelu", False)
    nxt = vlm_config_from_hf(_config(cases["llava_next"]["path"]), llm={"remat": "full"})
    assert (nxt.layout, nxt.max_views, nxt.llm.remat) == ("anyres", 5, "full")  # 2x2 pinpoint: 4 tiles + base
    ivl = vlm_config_from_hf(_config(cases["internvl"]["path"]))
    assert (ivl.layout, ivl.max_views, ivl.select_layer, ivl.projector.kind) == ("flat", 13, -1, "internvl")
    assert ivl.llm.tie_embeddings and ivl.tokens_per_view == 16 and ivl.llm.qkv_bias
    full = vlm_config_from_hf({**_config(cases["llava"]["path"]), "vision_feature_select_strategy": "full"})
    assert full.keep_cls and full.tokens_per_view == 65


@pytest.mark.parametrize("change, message", [
    (dict(model_type="paligemma"), "unsupported VLM model_type"),
    (dict(vision_feature_layer=[-2, -1]), "single int layer"),
    (dict(multimodal_projector_bias=False), "multimodal_projector_bias"),
    (dict(projector_hidden_act="swish_glu"), "projector_hidden_act"),
    (dict(vision_feature_select_strategy="full", model_type="llava_next"), "llava_next"),
    (dict(image_grid_pinpoints=[[32, 48]], model_type="llava_next"), "multiple of the vision image_size"),
    (dict(vision_config=dict(model_type="dinov2")), "vision tower model_type"),
    (dict(vision_config=dict(hb.CLIP_V, model_type="siglip_vision_model")), "no CLS token"),
])
def test_unsupported_options_raise(change, message, cases):
    with pytest.raises(ValueError, match=message):
        vlm_config_from_hf({**_config(cases["llava"]["path"]), **change})


def test_unsupported_internvl_options_and_overrides_raise(cases):
    cfg = _config(cases["internvl"]["path"])
    no_mean_pool = {**cfg, "vision_config": {**cfg["vision_config"], "use_mean_pooling": False}}
    with pytest.raises(ValueError, match="use_mean_pooling"):
        vlm_config_from_hf(no_mean_pool)
    with pytest.raises(ValueError, match="unknown VLMConfig overrides"):
        vlm_config_from_hf(cfg, max_veiws=4)
    with pytest.raises(ValueError, match="unknown VLMConfig overrides"):
        vlm_config_from_hf(cfg, projector={"kind": "mlp2x_gelu"})


def test_gswa_starts_as_the_identity_on_a_converted_internvl(cases):
    """SleighVL (spec §3.2): GSWA added to a converted InternVL leaves its logits unchanged until trained."""
    case = cases["internvl"]
    cfg = vlm_config_from_hf(_config(case["path"]), max_views=INTERNVL_MAX_VIEWS)
    cfg = dataclasses.replace(cfg, gswa=GSWAConfig(dim=32, layers=2, heads=2))
    model = VLM(cfg, rngs=nnx.Rngs(0))
    assert load_base_weights(model, case["path"])[:2] == ["vision_tower", "language_model"]
    batch, ref, _, _ = case["batches"][0]
    forward = jax.jit(lambda m, b: m(b))
    _check_logits(np.asarray(forward(model, batch)), ref, batch["valid"])
    # the module is live: a trained (here: perturbed) query changes the multi-tile example only
    query = model.gswa.head.q.kernel
    query[...] = jax.random.normal(jax.random.key(1), query[...].shape)
    moved = np.asarray(forward(model, batch))
    assert np.abs(moved[1][batch["valid"][1]] - ref[1][batch["valid"][1]]).max() > 1e-3
    _check_logits(moved[:1], ref[:1], batch["valid"][:1])
