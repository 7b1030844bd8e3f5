"""The original LLaVA layout (``haotian-liu/LLaVA``'s ``LlavaLlamaForCausalLM``) against transformers' LLaVA.

A tiny perturbed transformers ``LlavaForConditionalGeneration`` is rewritten key by key into the original layout:
``model.vision_tower.vision_tower.vision_model.*``, ``model.mm_projector.{0,2}.*``, ``model.embed_tokens``,
``model.layers.{i}.*``, ``model.norm``, ``lm_head``, with the original flat Llama ``config.json`` + ``mm_*`` fields
(``mm_vision_tower`` naming a local CLIP directory, as a locally trained LLaVA records it). Imported with
``load_vlm_from_hf_dir``, our logits must equal transformers' (float32, max |Δ| ≤ 1e-4 · max |ref|) and be
identical to the llava-hf import of the same weights.
"""

import json

import hf_builders as hb
import numpy as np
import pytest
import safetensors.torch
import torch
import transformers as T
from flax import nnx

from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir, vlm_config_from_hf

REL_TOL = 1e-4
# transformers' LLaVA (in-memory names) → the original repository's
RENAMES = (("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
           ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
           ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
           ("model.language_model.", "model."), ("lm_head.", "lm_head."))
# (HF LlavaConfig fields, the original config's mm_vision_select_* fields)
VARIANTS = {"patch_layer_-2": (dict(vision_feature_layer=-2, vision_feature_select_strategy="default"),
                               dict(mm_vision_select_layer=-2, mm_vision_select_feature="patch")),
            "cls_patch_layer_-1": (dict(vision_feature_layer=-1, vision_feature_select_strategy="full"),
                                   dict(mm_vision_select_layer=-1, mm_vision_select_feature="cls_patch"))}


def original_tensors(hf: T.LlavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in hf.state_dict().items():
        theirs, original = next((t, o) for t, o in RENAMES if key.startswith(t))
        out[original + key[len(theirs):]] = value
    return out


def original_config(clip_dir: str, **fields) -> dict:
    """``config.json`` of ``LlavaLlamaForCausalLM`` as the original repository saves it (Llama fields + ``mm_*``)."""
    llama = {k: v for k, v in hb.TEXT.items()}
    return dict(dict(architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama", hidden_act="silu",
                     rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="float32",
                     use_cache=True, mm_vision_tower=clip_dir, mm_hidden_size=hb.CLIP_V["hidden_size"],
                     mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, mm_vision_select_feature="patch",
                     mm_patch_merge_type="flat", image_aspect_ratio="pad", mm_use_im_start_end=False,
                     mm_use_im_patch_token=False, tune_mm_mlp_adapter=False, freeze_mm_mlp_adapter=False,
                     use_mm_proj=True, tokenizer_padding_side="right", **llama), **fields)


def write_original(path, tensors: dict, config: dict) -> str:
    path.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip")
    T.CLIPVisionConfig(**hb.CLIP_V).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def case(request, tmp_path_factory, clip_dir):
    hf_fields, mm_fields = VARIANTS[request.param]
    hf = hb.build_llava(seed=11, **hf_fields)
    tmp = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(tmp / "llava_hf")
    tensors = original_tensors(hf)
    path = write_original(tmp / "original", tensors, original_config(clip_dir, **mm_fields))
    rng = np.random.default_rng(11)
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    n = 64 + (hf_fields["vision_feature_select_strategy"] == "full")
    ids, mask = hb.pad_right([hb.prompt(n, 9, rng), hb.prompt(n, 4, rng)], 80)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px).logits.numpy()
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=1)
    return dict(path=path, llava_hf=str(tmp / "llava_hf"), tensors=tensors, batch=batch, ref=ref, n=n, hf=hf)


def _logits(model, batch) -> np.ndarray:
    return np.asarray(nnx.jit(lambda m, b: m(b))(model, batch))


def _check_logits(ours, ref, mask):
    err, scale = np.abs(ours[mask] - ref[mask]).max(), np.abs(ref[mask]).max()
    assert scale > 0.5, "reference logits too small for a meaningful relative check"
    assert err <= REL_TOL * scale, f"max |Δlogits| {err:.3g} > {REL_TOL} · {scale:.3g}"


def test_original_layout_logits_match_transformers_and_the_llava_hf_import(case):
    assert "model.mm_projector.2.bias" in case["tensors"] and "model.layers.1.mlp.up_proj.weight" in case["tensors"]
    assert "model.vision_tower.vision_tower.vision_model.pre_layrnorm.weight" in case["tensors"]
    model = load_vlm_from_hf_dir(case["path"], image_token_id=hb.IMG_TOK)
    assert model.cfg.tokens_per_view == case["n"] and model.cfg.projector.kind == "mlp2x_gelu"
    ours = _logits(model, case["batch"])
    _check_logits(ours, case["ref"], case["batch"]["valid"])
    np.testing.assert_array_equal(ours, _logits(load_vlm_from_hf_dir(case["llava_hf"]), case["batch"]))


def test_a_swapped_projector_layer_breaks_parity(case, tmp_path, clip_dir):
    """The comparison can fail: the two projector biases' first entries swapped."""
    tensors = dict(case["tensors"])
    b0, b2 = tensors["model.mm_projector.0.bias"].clone(), tensors["model.mm_projector.2.bias"].clone()
    b0[0], b2[0] = case["tensors"]["model.mm_projector.2.bias"][0], case["tensors"]["model.mm_projector.0.bias"][0]
    tensors.update({"model.mm_projector.0.bias": b0, "model.mm_projector.2.bias": b2})
    cfg = json.loads(open(f"{case['path']}/config.json").read())
    model = load_vlm_from_hf_dir(write_original(tmp_path / "bad", tensors, cfg), image_token_id=hb.IMG_TOK)
    with pytest.raises(AssertionError, match="logits"):
        _check_logits(_logits(model, case["batch"]), case["ref"], case["batch"]["valid"])


def test_old_position_ids_buffer_is_read_past_and_a_missing_tower_is_read_from_mm_vision_tower(case, tmp_path):
    """As llava-v1.5 ships: no tower in the checkpoint, ``mm_vision_tower`` names the CLIP directory."""
    cfg = json.loads(open(f"{case['path']}/config.json").read())
    buffer = {"model.vision_tower.vision_tower.vision_model.embeddings.position_ids": torch.arange(65)[None]}
    model = load_vlm_from_hf_dir(write_original(tmp_path / "old", {**case["tensors"], **buffer}, cfg),
                                 image_token_id=hb.IMG_TOK)
    _check_logits(_logits(model, case["batch"]), case["ref"], case["batch"]["valid"])
    no_tower = {k: v for k, v in case["tensors"].items() if "vision_tower" not in k}
    with pytest.raises(CheckpointError, match="stores no vision tower"):  # mm_vision_tower: a config-only directory
        load_vlm_from_hf_dir(write_original(tmp_path / "no_tower", no_tower, cfg), image_token_id=hb.IMG_TOK)
    case["hf"].model.vision_tower.save_pretrained(tmp_path / "clip_weights")  # CLIPVisionModel: vision_model.*
    cfg = dict(cfg, mm_vision_tower=str(tmp_path / "clip_weights"))
    model = load_vlm_from_hf_dir(write_original(tmp_path / "tower_apart", no_tower, cfg), image_token_id=hb.IMG_TOK)
    _check_logits(_logits(model, case["batch"]), case["ref"], case["batch"]["valid"])


def test_config_of_a_known_tower_name_and_refusals(clip_dir):
    cfg = vlm_config_from_hf(original_config("openai/clip-vit-large-patch14-336", mm_hidden_size=1024),
                             image_token_id=hb.IMG_TOK)
    ref = T.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                             patch_size=14, image_size=336)  # transformers' CLIP-L/14-336 (hub config values)
    v = cfg.vision
    assert (v.hidden, v.mlp, v.layers, v.heads, v.patch, v.image_size, v.act) == (
        ref.hidden_size, ref.intermediate_size, ref.num_hidden_layers, ref.num_attention_heads, ref.patch_size,
        ref.image_size, ref.hidden_act)
    assert cfg.tokens_per_view == 576 and (cfg.select_layer, cfg.keep_cls) == (-2, False)
    with pytest.raises(ValueError, match="image_token_id"):
        vlm_config_from_hf(original_config(clip_dir))
    for change, message in ((dict(mm_projector_type="linear"), "mm_projector_type"),
                            (dict(mm_use_im_start_end=True), "mm_use_im_start_end"),
                            (dict(mm_use_im_patch_token=True), "mm_use_im_patch_token"),
                            (dict(mm_patch_merge_type="spatial_unpad", image_aspect_ratio="anyres"), "flat"),
                            (dict(mm_vision_select_feature="cls"), "mm_vision_select_feature"),
                            (dict(mm_vision_tower="some/unknown-tower"), "mm_vision_tower"),
                            (dict(mm_hidden_size=1024), "mm_hidden_size")):
        with pytest.raises(ValueError, match=message):
            vlm_config_from_hf(original_config(clip_dir, **change), image_token_id=hb.IMG_TOK)
