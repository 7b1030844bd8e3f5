"""Hugging Face import of the decoder LLM: Llama (Vicuna, Llama-3), Qwen2 and InternLM2 checkpoints.

The key and config tables are in :mod:`vlm_jax.interop.mappings` (``llama``, ``qwen2``, ``internlm2``); keys
are relative to the causal LM (``source.sub("language_model.")`` inside a VLM checkpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from flax import nnx

from vlm_jax.interop.apply_mapping import load_mapped
from vlm_jax.interop.checkpoint_io import TensorSource, check_all_set
from vlm_jax.interop.mappings.towers import DECODERS, decoder_family, lm_config
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder

SUPPORTED_MODEL_TYPES = tuple(f.config.model_type for f in DECODERS.values())


def lm_config_from_hf(d: Mapping[str, Any], **overrides) -> LMConfig:
    """:class:`LMConfig` from a HF ``config.json`` dict of a ``llama``, ``qwen2`` or ``internlm2`` model.

    Features the decoder does not implement (MLP / output biases, sliding windows, non-SiLU MLPs,
    partial rotary) raise ``ValueError``. ``overrides`` set the runtime fields (``dtype``, ``remat``, ...).
    """
    return lm_config(d, **overrides)


def load_decoder(decoder: Decoder, source: TensorSource) -> Decoder:
    """Fill ``decoder`` (possibly abstract, from ``nnx.eval_shape``) from a HF LLM checkpoint view.

    The layout is recognised from the keys (``model.tok_embeddings.weight`` → InternLM2). A tied
    decoder accepts a stored head only if it equals the embedding. Every tensor must be used and every
    parameter set; otherwise :class:`~vlm_jax.interop.errors.CheckpointError`.
    """
    load_mapped(decoder, source, decoder_family(decoder.cfg, source).keys(decoder.cfg))
    check_all_set(decoder)
    return decoder


def load_decoder_from_hf_dir(path: str, **overrides) -> Decoder:
    """A :class:`Decoder` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    Parameters are created abstractly and filled from the checkpoint (no random initialisation).
    ``overrides`` go to :func:`lm_config_from_hf` (e.g. ``dtype="bfloat16"``).
    """
    with open(os.path.join(path, "config.json")) as f:
        cfg = lm_config_from_hf(json.load(f), **overrides)
    decoder = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    return load_decoder(decoder, TensorSource.open(path))
