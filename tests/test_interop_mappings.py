"""The key and config tables of every checkpoint family (``vlm_jax.interop.mappings``), in both directions.

* Every transform a table declares round-trips exactly on random arrays (ours → HF → ours and HF → ours → HF),
  with the HF shape ``jax.eval_shape`` predicts; layer stacking too; every transform kind is exercised.
* Every rule of every table applies to at least one tiny model (no dead rules).
* Tower tables against transformers: a tiny HF tower written by ``save_pretrained``, imported and exported by
  the same table, gives back exactly its tensors (names, shapes, bits).
* Config tables against transformers: our config → HF dict → the transformers config class gives the config
  the original model had, field for field.
* A checkpoint's stored copy of a tied head is accepted only when it equals the embedding.
"""

import os

import hf_builders as hb
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers as T
from flax import nnx
from test_internvl_chat_parity import chat_config

from vlm_jax.interop.apply_mapping import applicable_rules, hf_shape, parameters, plan_export
from vlm_jax.interop.checkpoint_io import CheckpointError, TensorSource, canonical_key
from vlm_jax.interop.hf_lm import lm_config_from_hf, load_decoder, load_decoder_from_hf_dir
from vlm_jax.interop.hf_vision import load_vit_from_hf_dir, vit_config_from_hf
from vlm_jax.interop.hf_vlm import vlm_config_from_hf
from vlm_jax.interop.mappings.towers import DECODERS, VISION, decoder_family
from vlm_jax.interop.mappings.vlms import VLMS, vlm_keys
from vlm_jax.interop.transforms import layer_slice, stack_layers
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.model import VLM
from vlm_jax.vision.vit import ViT

VISION_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                   patch_size=4)
LM_TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64)
# (our family name, transformers config class, options): every option a table distinguishes
VISION_CASES = {
    "clip": ("clip", T.CLIPVisionConfig, {}),
    "siglip": ("siglip", T.SiglipVisionConfig, {}),
    "siglip_no_head": ("siglip", T.SiglipVisionConfig, dict(vision_use_head=False)),
    "internvl": ("internvl", T.InternVLVisionConfig, {}),
    "internvl_qknorm_bias_ln": ("internvl", T.InternVLVisionConfig,
                                dict(use_qk_norm=True, attention_bias=True, use_mean_pooling=False)),
    "internvl_rms_mask_token": ("internvl", T.InternVLVisionConfig,
                                dict(norm_type="rms_norm", use_qk_norm=True, use_mask_token=True)),
}
DECODER_CASES = {
    "llama": (T.LlamaConfig, T.LlamaForCausalLM, {}),
    "llama_tied_llama3_rope": (T.LlamaConfig, T.LlamaForCausalLM, dict(
        tie_word_embeddings=True, rope_parameters=dict(rope_type="llama3", rope_theta=5e5, factor=8.0,
                                                       low_freq_factor=1.0, high_freq_factor=4.0,
                                                       original_max_position_embeddings=16))),
    "llama_dynamic_rope": (T.LlamaConfig, T.LlamaForCausalLM, dict(
        rope_parameters=dict(rope_type="dynamic", rope_theta=1e4, factor=2.0))),
    "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(rms_norm_eps=1e-5)),
}
# InternViT's released layout (no transformers class): ``InternVisionConfig`` fields
INTERN_VIT_CASES = {
    "intern_vit_qknorm_bias_ln": dict(VISION_TINY, qkv_bias=True, qk_normalization=True, norm_type="layer_norm"),
    "intern_vit_rms": dict(VISION_TINY, qkv_bias=False, qk_normalization=False, norm_type="rms_norm"),
}
INTERNLM2 = LMConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)


def _vision_cfg(name):
    kind, config_cls, options = VISION_CASES[name]
    return vit_config_from_hf(config_cls(**VISION_TINY, **options).to_dict(), kind)


def _vlm_hf_configs():
    text = T.LlamaConfig(**hb.TEXT)
    return {
        "llava": T.LlavaConfig(vision_config=T.CLIPVisionConfig(**hb.CLIP_V), text_config=text,
                               image_token_index=hb.IMG_TOK),
        "llava_next": T.LlavaNextConfig(vision_config=T.CLIPVisionConfig(**hb.CLIP_V), text_config=text,
                                        image_token_index=hb.IMG_TOK, image_grid_pinpoints=hb.PINPOINTS),
        "internvl": T.InternVLConfig(vision_config=T.InternVLVisionConfig(**hb.INTERNVL_V),
                                     text_config=T.Qwen2Config(**hb.TEXT), image_token_id=hb.IMG_TOK),
    }


def _table_cases():
    """``(label, family name, key table, abstract module)`` over every family and its options."""
    cases = []
    for name in VISION_CASES:
        cfg = _vision_cfg(name)
        family = VISION[VISION_CASES[name][0]]
        cases.append((name, family.name, family.keys(cfg), nnx.eval_shape(lambda c=cfg: ViT(c, rngs=nnx.Rngs(0)))))
    for name, hf_cfg in INTERN_VIT_CASES.items():
        family = VISION["intern_vit"]
        cfg = vit_config_from_hf(hf_cfg, "intern_vit")
        cases.append((name, family.name, family.keys(cfg), nnx.eval_shape(lambda c=cfg: ViT(c, rngs=nnx.Rngs(0)))))
    for name, (config_cls, _, options) in DECODER_CASES.items():
        lm = _lm_cfg(config_cls, options)
        family = decoder_family(lm)
        cases.append((name, family.name, family.keys(lm), nnx.eval_shape(lambda c=lm: Decoder(c, rngs=nnx.Rngs(0)))))
    cases.append(("internlm2", "internlm2", DECODERS["internlm2"].keys(INTERNLM2),
                  nnx.eval_shape(lambda: Decoder(INTERNLM2, rngs=nnx.Rngs(0)))))
    for name, hf_cfg in {**_vlm_hf_configs(), "internvl_chat": chat_config()}.items():
        cfg = vlm_config_from_hf(hf_cfg if isinstance(hf_cfg, dict) else hf_cfg.to_dict(), image_token_id=hb.IMG_TOK)
        cases.append((name, "vlm:" + name, vlm_keys(VLMS[name], cfg),
                      nnx.eval_shape(lambda c=cfg: VLM(c, rngs=nnx.Rngs(0)))))
    return cases


def _lm_cfg(config_cls, options):
    return lm_config_from_hf(config_cls(**LM_TINY, **options).to_dict())


CASES = _table_cases()


@pytest.mark.parametrize("label, family, keys, module", CASES, ids=[c[0] for c in CASES])
def test_every_declared_transform_round_trips_exactly(label, family, keys, module):
    params = parameters(module)
    rng = np.random.default_rng(0)
    for r in applicable_rules(keys, params):
        shapes = [tuple(params[p].get_value().shape) for p in r.ours]
        if r.stacked:
            stacked = [rng.normal(size=s).astype(np.float32) for s in shapes]
            for a in stacked:  # layer stacking and its inverse
                np.testing.assert_array_equal(stack_layers([layer_slice(a, i) for i in range(len(a))]), a)
            shapes = [s[1:] for s in shapes]
        ours = [rng.normal(size=s).astype(np.float32) for s in shapes]
        hf = r.transform.to_hf(*ours)
        assert hf.shape == hf_shape(r, shapes), r.hf
        for a, b in zip(r.transform.to_ours(hf), ours, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{r.hf}: to_ours(to_hf(x)) != x")
        hf_random = rng.normal(size=hf.shape).astype(np.float32)
        np.testing.assert_array_equal(r.transform.to_hf(*r.transform.to_ours(hf_random)), hf_random,
                                      err_msg=f"{r.hf}: to_hf(to_ours(y)) != y")


def test_every_transform_kind_and_every_rule_is_used():
    kinds = {r.transform.name.split("(")[0].split(":")[0] for _, _, keys, m in CASES
             for r in applicable_rules(keys, parameters(m))}
    assert kinds == {"identity", "linear", "heads_in", "heads_out", "head_bias", "leading_unit_axes", "patch_conv",
                     "packed_rows", "grouped_qkv"}
    applied: dict[str, set[str]] = {}
    declared: dict[str, set[str]] = {}
    towers = ("vision_tower.", "vision_model.", "language_model.")  # checked with the tower families
    for _, family, keys, module in CASES:
        declared.setdefault(family, set()).update(r.hf for r in keys.rules if not r.hf.startswith(towers))
        applied.setdefault(family, set()).update(r.hf for r in applicable_rules(keys, parameters(module))
                                                 if not r.hf.startswith(towers))
    for family in declared:
        assert declared[family] == applied[family], f"{family}: rules no tiny model uses"


def _saved(path) -> dict[str, np.ndarray]:
    out = {}
    for name in os.listdir(path):
        if name.endswith(".safetensors"):
            out.update({canonical_key(k): v for k, v in safetensors.numpy.load_file(os.path.join(path, name)).items()})
    return out


def _exported(module, keys) -> dict[str, np.ndarray]:
    return {t.key: t.fetch() for t in plan_export(module, keys)}


@pytest.mark.parametrize("name", sorted(VISION_CASES))
def test_vision_tower_import_then_export_gives_back_the_hf_tensors(name, tmp_path):
    kind, config_cls, options = VISION_CASES[name]
    model_cls = {"clip": T.CLIPVisionModel, "siglip": T.SiglipVisionModel, "internvl": T.InternVLVisionModel}[kind]
    torch.manual_seed(0)
    hb.perturb(model_cls(config_cls(**VISION_TINY, **options)), seed=0).save_pretrained(tmp_path)
    vit = load_vit_from_hf_dir(str(tmp_path), kind)
    keys = VISION[kind].keys(vit.cfg)
    theirs = {k: v for k, v in _saved(tmp_path).items() if not keys.is_ignored(k)}
    ours = _exported(vit, keys)
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert ("embeddings.mask_token" in _saved(tmp_path)) == options.get("use_mask_token", False)


@pytest.mark.parametrize("name", sorted(DECODER_CASES))
def test_decoder_import_then_export_gives_back_the_hf_tensors(name, tmp_path):
    config_cls, model_cls, options = DECODER_CASES[name]
    torch.manual_seed(0)
    hb.perturb(model_cls(config_cls(**LM_TINY, **options)), seed=0).save_pretrained(tmp_path)
    decoder = load_decoder_from_hf_dir(str(tmp_path))
    theirs, ours = _saved(tmp_path), _exported(decoder, decoder_family(decoder.cfg).keys(decoder.cfg))
    assert sorted(ours) == sorted(theirs)
    assert ("lm_head.weight" in ours) == (not options.get("tie_word_embeddings", False))
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


@pytest.mark.parametrize("name", sorted(VISION_CASES))
def test_vision_config_table_round_trips_through_transformers(name):
    kind, config_cls, options = VISION_CASES[name]
    original = config_cls(**VISION_TINY, **options)
    written = VISION[kind].config.to_hf(_vision_cfg(name))
    assert written["model_type"] == original.model_type
    rebuilt = config_cls(**{k: v for k, v in written.items() if k != "model_type"})
    # the mask token (masked-image-modelling pre-training only) is dropped on import, so not written back
    dropped = {"use_mask_token": False} if kind == "internvl" else {}
    assert rebuilt.to_dict() == {**original.to_dict(), **dropped}


@pytest.mark.parametrize("name", sorted(DECODER_CASES))
def test_decoder_config_table_round_trips_through_transformers(name):
    config_cls, _, options = DECODER_CASES[name]
    original = config_cls(**LM_TINY, **options)
    lm = _lm_cfg(config_cls, options)
    written = decoder_family(lm).config.to_hf(lm)
    assert written["model_type"] == original.model_type
    rebuilt = config_cls(**{k: v for k, v in written.items() if k != "model_type"})
    # head_dim is always written (Qwen2Config has no such field but its attention reads it when present)
    head_dim = LM_TINY["hidden_size"] // LM_TINY["num_attention_heads"]
    assert rebuilt.to_dict() == {**original.to_dict(), "head_dim": head_dim}


def test_stored_copy_of_a_tied_head_must_equal_the_embedding(tmp_path):
    lm = _lm_cfg(T.LlamaConfig, dict(tie_word_embeddings=True))
    tensors = _exported(Decoder(lm, rngs=nnx.Rngs(0)), decoder_family(lm).keys(lm))
    embedding = tensors["model.embed_tokens.weight"]
    for name, head in (("equal", embedding), ("differs", embedding + 1.0)):
        path = str(tmp_path / f"{name}.safetensors")
        safetensors.numpy.save_file({**tensors, "lm_head.weight": np.ascontiguousarray(head)}, path)
        decoder = nnx.eval_shape(lambda: Decoder(lm, rngs=nnx.Rngs(0)))
        if name == "equal":
            load_decoder(decoder, TensorSource.open(path))
        else:
            with pytest.raises(CheckpointError, match="ties lm_head.weight to model.embed_tokens.weight"):
                load_decoder(decoder, TensorSource.open(path))
