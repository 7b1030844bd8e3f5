"""Model presets as plain dicts for ``configs/*.py`` (``config.model = presets.llava_15_7b()``).

Real sizes come from the tower presets (``vlm_jax.vision.config``, ``vlm_jax.lm.config``); tiny ones are
for CPU tests and the embedded default. Every dict goes through ``VLMConfig.from_dict`` (typos fail).

Vocabulary and image token, per checkpoint (``image_token_id < llm.vocab_size`` is checked by ``VLMConfig``):

* llava-hf (LLaVA-1.5 / NeXT): Vicuna's 32000 pieces + ``<image>`` (32000) + ``<pad>`` (32001), tables padded to
  32064 by the conversion (``text_config.vocab_size`` 32064, ``image_token_index`` 32000).
* InternVL2-2B: internlm2-chat-1_8b's 92553 rows; ``<IMG_CONTEXT>`` is 92546 in its tokenizer.
* Vicuna and Llama-3 starting points (HiRes-LLaVA, SliME, INF-LLaVA): the papers' LLaVA code adds no token (the
  image sits at the sentinel id -200 and is never embedded), so their LLM checkpoints keep the base vocabulary. Here
  the image token is added to the tokenizer (``Tokenizer.with_image_token()``, id = base vocabulary) and the tables
  grow by transformers' mean resizing padded to 64 rows (:func:`vlm_jax.lm.resize_vocab.fit_vocab_to_tokenizer`):
  Vicuna 32000 + 1 → 32064 (the same tables as llava-hf, so its checkpoints load too), Llama-3 128256 + 1 →
  128320, image token 128256.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vlm_jax.lm import config as lm_presets
from vlm_jax.lm.resize_vocab import padded_vocab
from vlm_jax.vision import config as vit_presets

LLAVA_HF_VOCAB, LLAVA_HF_IMAGE_TOKEN = 32064, 32000  # text_config.vocab_size, image_token_index of llava-hf
LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def _asdict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def tiny_vision(kind: str = "clip", image_size: int = 32, patch: int = 8, hidden: int = 32,
                layers: int = 2) -> dict[str, Any]:
    """A 2-layer ViT of the given family (CLIP: CLS + pre-LN + quick-GELU; InternViT: layer scale)."""
    base = dict(hidden=hidden, layers=layers, heads=2, mlp=2 * hidden, patch=patch, image_size=image_size)
    if kind == "clip":
        return dict(base, act="quick_gelu", cls_token=True, pre_norm=True, final_norm="cls", patch_bias=False,
                    norm_eps=1e-5)
    if kind == "internvit":
        return dict(base, act="gelu", cls_token=True, final_norm="none", layer_scale=True, norm_eps=1e-6)
    if kind == "siglip":
        return dict(base, act="gelu_tanh", final_norm="tokens")
    raise ValueError(f"unknown tiny vision kind {kind!r}")


def tiny_llm(vocab_size: int = 128, hidden: int = 32, layers: int = 2) -> dict[str, Any]:
    return dict(vocab_size=vocab_size, hidden_size=hidden, num_layers=layers, num_heads=2, num_kv_heads=1,
                head_dim=hidden // 2, mlp_dim=2 * hidden, norm_eps=1e-6, max_seq_len=4096)


def with_added_image_token(llm: lm_presets.LMConfig) -> dict[str, Any]:
    """``llm`` with one row per base token + the image token (id = the base vocabulary), padded to 64 rows, and
    that ``image_token_id`` (module docstring): ``{"llm": ..., "image_token_id": ...}``."""
    return dict(llm=_asdict(llm.replace(vocab_size=padded_vocab(llm.vocab_size + 1))), image_token_id=llm.vocab_size)


def llava_15_7b(**overrides) -> dict[str, Any]:
    """LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf): CLIP-L/14-336 (layer -2, no CLS) + mlp2x_gelu + Vicuna-7B with
    llava-hf's vocabulary (32064 rows, ``<image>`` 32000); one 336 view."""
    llm = lm_presets.vicuna_7b().replace(vocab_size=LLAVA_HF_VOCAB)
    base = dict(vision=_asdict(vit_presets.clip_l14_336()), llm=_asdict(llm),
                projector=dict(kind="mlp2x_gelu"), select_layer=-2, layout="flat", max_views=1, global_view="none",
                image_token_id=LLAVA_HF_IMAGE_TOKEN)
    return {**base, **overrides}


def llava_next_7b(**overrides) -> dict[str, Any]:
    """LLaVA-NeXT-7B (llava-hf/llava-v1.6-vicuna-7b-hf, vocabulary as LLaVA-1.5): as LLaVA-1.5 with anyres (≤ 4
    tiles + base view), unpad + newline."""
    return llava_15_7b(**{"layout": "anyres", "max_views": 5, "global_view": "first", **overrides})


def internvl2_2b(**overrides) -> dict[str, Any]:
    """InternVL2-2B: InternViT-300M-448 (last layer) + pixel shuffle MLP + InternLM2-chat-1.8B; ≤ 12 tiles +
    thumbnail. ``image_token_id`` is the ``<IMG_CONTEXT>`` id of its tokenizer (92546)."""
    base = dict(vision=_asdict(vit_presets.internvit_300m_448()), llm=_asdict(lm_presets.internlm2_1_8b()),
                projector=dict(kind="internvl", downsample=0.5), select_layer=-1, layout="flat", max_views=13,
                image_token_id=92546)
    return {**base, **overrides}


# --- the four papers ---------------------------------------------------------------------------------

def sleighvl_2b(**overrides) -> dict[str, Any]:
    """SleighVL = InternVL2-2B + GSWA (spec §3.2 [inferred] sizes: d_g 1024, 2 layers, 8 heads)."""
    return internvl2_2b(**{"gswa": dict(dim=1024, layers=2, heads=8), **overrides})


def hires_llava_7b(**overrides) -> dict[str, Any]:
    """HiRes-LLaVA (spec §4.2, [inferred] numbers): CLIP-L/14-336 slices (LLaVA-NeXT grids, ≤ 4 slices) + the
    low-res global view first; SliceRestore after ViT layers 5, 11, 17 (every 6th below the selected layer -2);
    Self-Mining 2×2 pooling (576 → 144 tokens per slice, one layer); mlp2x_gelu; Vicuna-7B + the image token
    (32000; 32064 rows)."""
    return llava_15_7b(**{"max_views": 5, "global_view": "first",
                          "slice_restore": dict(layers=(5, 11, 17), max_rows=3, max_cols=3, heads=16, down=2),
                          "self_mining": dict(ratio=2, depth=1, heads=16), **overrides})


def inf_llava_8b(**overrides) -> dict[str, Any]:
    """INF-LLaVA [336+1008] (spec §5): CLIP-L/14-336 on 9 contiguous + 9 strided crops + the low-res view,
    DEM (official-code variant), mlp2x_gelu, Llama-3-8B-Instruct + the image token (128256; 128320 rows)."""
    return llava_15_7b(**{**with_added_image_token(lm_presets.llama3_8b()), "max_views": 19, "global_view": "last",
                          "dem": dict(heads=8), **overrides})


def slime_7b(**overrides) -> dict[str, Any]:
    """SliME-7B (spec §6): CLIP-L/14-336, global adapter mixture (576 tokens) + separator + ≤ 7 slices × 144
    selected local tokens (UHD candidate grids), Vicuna-7B + the image token (32000; 32064 rows)."""
    return llava_15_7b(**{"max_views": 8, "global_view": "first", "slime": dict(global_grid=24, local_grid=12),
                          **overrides})


def slime_8b(**overrides) -> dict[str, Any]:
    """SliME-8B: as SliME-7B with Llama-3-8B-Instruct + the image token (128256; 128320 rows)."""
    return slime_7b(**{**with_added_image_token(lm_presets.llama3_8b()), **overrides})
