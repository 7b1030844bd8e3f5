"""``internvl_chat`` import (InternVL2's released layout) against transformers' InternVL.

transformers' ``InternVLForConditionalGeneration`` is a port of InternVL's remote-code ``InternVLChatModel``. A
tiny perturbed transformers InternVL with a Llama text model is rewritten key by key into the released layout,
as InternVL2-2B ships it: ``vision_model.*`` (InternViT: ``class_embedding``, ``position_embedding``,
``patch_embedding``, per layer ``attn.qkv`` = q, k, v rows concatenated as ``modeling_intern_vit.py`` splits
them, ``attn.proj``, ``norm1/2``, ``ls1/2``), ``mlp1.{0,1,3}`` and ``language_model.*`` in InternLM2's layout
(fused ``wqkv``, GQA with 2 kv heads), with an ``internvl_chat`` ``config.json``. Imported with
``load_vlm_from_hf_dir``, our logits must equal transformers' (float32, max |Δ| ≤ 1e-4 · max |ref|) on a batch
mixing a 1-tile image and a 2-tile + thumbnail image.
"""

import json
import re

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
VISION = dict(hb.INTERNVL_V, use_qk_norm=True, attention_bias=True)
TEXT = dict(hb.TEXT, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
KV_HEADS, LAYERS = TEXT["num_key_value_heads"], TEXT["num_hidden_layers"]
# transformers' InternVL vision tower → InternViT's released names (per-layer q / k / v are fused separately)
VISION_NAMES = (("embeddings.cls_token", "embeddings.class_embedding"),
                ("embeddings.position_embeddings", "embeddings.position_embedding"),
                ("embeddings.patch_embeddings.projection.", "embeddings.patch_embedding."),
                ("encoder.layer.", "encoder.layers."), ("attention.projection_layer.", "attn.proj."),
                ("attention.q_norm.", "attn.q_norm."), ("attention.k_norm.", "attn.k_norm."),
                ("layernorm_before.", "norm1."), ("layernorm_after.", "norm2."), ("lambda_1", "ls1"),
                ("lambda_2", "ls2"))
PROJECTOR_NAMES = {"layer_norm": "mlp1.0", "linear_1": "mlp1.1", "linear_2": "mlp1.3"}


def chat_config(**fields) -> dict:
    """An ``internvl_chat`` ``config.json`` (``InternVLChatConfig`` + ``InternVisionConfig`` + InternLM2 fields)."""
    vision = dict(model_type="intern_vit_6b", architectures=["InternVisionModel"], num_channels=3,
                  hidden_size=VISION["hidden_size"], intermediate_size=VISION["intermediate_size"],
                  num_hidden_layers=VISION["num_hidden_layers"], num_attention_heads=VISION["num_attention_heads"],
                  image_size=VISION["image_size"], patch_size=VISION["patch_size"], qkv_bias=True,
                  qk_normalization=True, norm_type="layer_norm", layer_norm_eps=1e-6, hidden_act="gelu",
                  use_flash_attn=False, drop_path_rate=0.0, initializer_factor=0.1)
    llm = hb.internlm2_config(**{k: v for k, v in TEXT.items() if k != "tie_word_embeddings"})
    return dict(dict(model_type="internvl_chat", architectures=["InternVLChatModel"], vision_config=vision,
                     llm_config=llm, select_layer=-1, downsample_ratio=0.5, ps_version="v2", force_image_size=32,
                     template="internlm2-chat", dynamic_image_size=True, use_thumbnail=True, max_dynamic_patch=3,
                     min_dynamic_patch=1, use_backbone_lora=0, use_llm_lora=0, pad2square=False), **fields)


def released_tensors(hf: T.InternVLForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The state dict of ``hf`` in ``InternVLChatModel``'s key layout."""
    sd = hf.state_dict()
    out = {}
    for key, value in sd.items():
        if key.startswith("model.vision_tower.") and not re.search(r"attention\.[qkv]_proj\.", key):
            name = key[len("model.vision_tower."):]
            for theirs, released in VISION_NAMES:
                name = name.replace(theirs, released)
            out["vision_model." + name] = value
        elif key.startswith("model.multi_modal_projector."):
            module, param = key[len("model.multi_modal_projector."):].split(".")
            out[f"{PROJECTOR_NAMES[module]}.{param}"] = value
    for i in range(VISION["num_hidden_layers"]):
        src = f"model.vision_tower.encoder.layer.{i}.attention."
        for param in ("weight", "bias"):
            out[f"vision_model.encoder.layers.{i}.attn.qkv.{param}"] = torch.cat(
                [sd[f"{src}{p}_proj.{param}"] for p in "qkv"])
    llm = hb.internlm2_tensors(sd, "model.language_model.", "lm_head.weight", LAYERS, KV_HEADS)
    out.update({"language_model." + k: v for k, v in llm.items()})
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The transformers reference, its checkpoint in the released layout, and a batch with HF's logits."""
    torch.manual_seed(5)
    cfg = T.InternVLConfig(vision_config=T.InternVLVisionConfig(**VISION), text_config=T.LlamaConfig(**TEXT),
                           image_token_id=hb.IMG_TOK, image_seq_length=16, downsample_ratio=0.5,
                           tie_word_embeddings=False)
    hf = hb.perturb(T.InternVLForConditionalGeneration(cfg), seed=5)
    path = tmp_path_factory.mktemp("internvl_chat")
    tensors = released_tensors(hf)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(chat_config()))

    rng = np.random.default_rng(5)
    px = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    ids, mask = hb.pad_right([hb.prompt(16, 9, rng), hb.prompt(48, 4, rng)], 72)  # 1 tile; 2 tiles + thumbnail
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px).logits.numpy()
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=4, grids=[(1, 1), (1, 2)])
    return dict(path=str(path), tensors=tensors, batch=batch, ref=ref)


def _check_logits(ours, ref, mask):
    err, scale = np.abs(ours[mask] - ref[mask]).max(), np.abs(ref[mask]).max()
    assert scale > 0.5, "reference logits too small for a meaningful relative check"
    assert err <= REL_TOL * scale, f"max |Δlogits| {err:.3g} > {REL_TOL} · {scale:.3g}"


def test_released_layout_logits_match_transformers(case):
    assert any(k.endswith("attention.wqkv.weight") for k in case["tensors"])
    assert "mlp1.3.weight" in case["tensors"] and "vision_model.encoder.layers.1.attn.qkv.bias" in case["tensors"]
    model = load_vlm_from_hf_dir(case["path"], image_token_id=hb.IMG_TOK)
    cfg = model.cfg
    assert (cfg.max_views, cfg.select_layer, cfg.keep_cls, cfg.projector.kind) == (4, -1, False, "internvl")
    assert cfg.vision.qk_norm and cfg.vision.attn_bias and cfg.vision.final_norm == "none"
    assert not cfg.llm.tie_embeddings and cfg.llm.num_kv_heads == KV_HEADS
    logits = np.asarray(nnx.jit(lambda m, b: m(b))(model, case["batch"]))
    _check_logits(logits, case["ref"], case["batch"]["valid"])


def test_a_misplaced_tensor_breaks_parity(case, tmp_path):
    """The comparison can fail: q and k rows of one layer's ``attn.qkv`` swapped."""
    tensors = dict(case["tensors"])
    key = "vision_model.encoder.layers.0.attn.qkv.weight"
    d = VISION["hidden_size"]
    tensors[key] = torch.cat([tensors[key][d:2 * d], tensors[key][:d], tensors[key][2 * d:]])
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(chat_config()))
    model = load_vlm_from_hf_dir(str(tmp_path), image_token_id=hb.IMG_TOK)
    with pytest.raises(AssertionError, match="logits"):
        _check_logits(np.asarray(nnx.jit(lambda m, b: m(b))(model, case["batch"])), case["ref"],
                      case["batch"]["valid"])


def test_unexpected_and_missing_tensors_are_named(case, tmp_path):
    for name, change in (("mlp1.2.weight", lambda t: {**t, "mlp1.2.weight": torch.zeros(3)}),
                         ("language_model.output.weight",
                          lambda t: {k: v for k, v in t.items() if k != "language_model.output.weight"})):
        path = tmp_path / name
        path.mkdir()
        safetensors.torch.save_file({k: v.contiguous() for k, v in change(case["tensors"]).items()},
                                    str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps(chat_config()))
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_vlm_from_hf_dir(str(path), image_token_id=hb.IMG_TOK)


@pytest.mark.parametrize("change, message", [
    (dict(ps_version="v1"), "ps_version"),
    (dict(use_llm_lora=8), "use_llm_lora"),
    (dict(force_image_size=448), "force_image_size"),
    (dict(vision_config=dict(chat_config()["vision_config"], norm_type="batch_norm")), "norm_type"),
    (dict(llm_config=hb.internlm2_config(**{k: v for k, v in TEXT.items() if k != "tie_word_embeddings"},
                                         bias=True)), "bias"),
])
def test_unsupported_options_raise(change, message):
    with pytest.raises(ValueError, match=message):
        vlm_config_from_hf(chat_config(**change), image_token_id=hb.IMG_TOK)


def test_image_token_id_is_required_and_the_tile_budget_comes_from_the_config():
    with pytest.raises(ValueError, match="image_token_id"):
        vlm_config_from_hf(chat_config())
    for fields, views in ((dict(), 4), (dict(use_thumbnail=False), 3), (dict(dynamic_image_size=False), 1)):
        assert vlm_config_from_hf(chat_config(**fields), image_token_id=hb.IMG_TOK).max_views == views
