"""Config fields every HF vision tower family shares (``CLIPVisionConfig``, ``SiglipVisionConfig``,
``InternVLVisionConfig``): sizes, channels, activation and LayerNorm epsilon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlm_jax.interop.config_table import ACT_FROM_HF, ACT_TO_HF, Field, named
from vlm_jax.interop.errors import NotExportable


def square(value: Any) -> int:
    """An HF size that is an int or a square ``[s, s]`` pair → ``s``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"only square patch / image sizes are supported, got {value}")
        value = value[0]
    return int(value)


def vision_fields(act: str, norm_eps: float, size_to_hf: Callable[[int], Any] = int) -> tuple[Field, ...]:
    """The shared fields with the family's default activation / epsilon; ``size_to_hf`` writes patch and
    image sizes (InternVL: ``[s, s]``)."""
    return (Field("hidden", "hidden_size"), Field("layers", "num_hidden_layers"),
            Field("heads", "num_attention_heads"), Field("mlp", "intermediate_size"),
            Field("patch", "patch_size", to_ours=square, to_hf=size_to_hf),
            Field("image_size", "image_size", to_ours=square, to_hf=size_to_hf),
            Field("channels", "num_channels", 3),
            Field("act", "hidden_act", act, to_ours=named(ACT_FROM_HF, "HF hidden_act"),
                  to_hf=named(ACT_TO_HF, "vision activation", NotExportable)),
            Field("norm_eps", "layer_norm_eps", norm_eps))
