"""Model presets as plain dicts for ``configs/*.py`` (``config.model = presets.llava_15_7b()``).

Real sizes come from the tower presets (``vlm_jax.vision.config``, ``vlm_jax.lm.config``); tiny ones are
for CPU tests and the embedded default. Every dict goes through ``VLMConfig.from_dict`` (typos fail).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vlm_jax.lm import config as lm_presets
from vlm_jax.vision import config as vit_presets

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


def llava_15_7b(**overrides) -> dict[str, Any]:
    """LLaVA-1.5-7B: CLIP-L/14-336 (layer -2, no CLS) + mlp2x_gelu + Vicuna-7B; one 336 view."""
    base = dict(vision=_asdict(vit_presets.clip_l14_336()), llm=_asdict(lm_presets.vicuna_7b()),
                projector=dict(kind="mlp2x_gelu"), select_layer=-2, layout="flat", max_views=1,
                image_token_id=32000)
    return {**base, **overrides}


def llava_next_7b(**overrides) -> dict[str, Any]:
    """LLaVA-NeXT-7B (vicuna): as LLaVA-1.5 with anyres (≤ 4 tiles + base view), unpad + newline."""
    return llava_15_7b(**{"layout": "anyres", "max_views": 5, **overrides})


def internvl2_2b(**overrides) -> dict[str, Any]:
    """InternVL2-2B: InternViT-300M-448 (last layer) + pixel shuffle MLP + InternLM2-chat-1.8B; ≤ 12 tiles +
    thumbnail. ``image_token_id`` is the ``<IMG_CONTEXT>`` id of its tokenizer (92546)."""
    base = dict(vision=_asdict(vit_presets.internvit_300m_448()), llm=_asdict(lm_presets.internlm2_1_8b()),
                projector=dict(kind="internvl", downsample=0.5), select_layer=-1, layout="flat", max_views=13,
                image_token_id=92546)
    return {**base, **overrides}
