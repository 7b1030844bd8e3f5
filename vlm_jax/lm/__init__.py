"""Decoder LLMs (Llama / Vicuna / Llama-3, Qwen2, InternLM2) and their KV cache.

``config`` (LMConfig + real-size presets), ``decoder`` (Decoder: embed / layers / logits),
``block`` and ``attention`` (one scanned layer), ``kv_cache`` (KVCache with mask_ar groups), ``resize_vocab``
(vocabulary growth for an added image token, as transformers' ``resize_token_embeddings``).
Hugging Face import: ``vlm_jax.interop.hf_lm``.
"""

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.lm.kv_cache import KVCache, init_cache, next_positions, prompt_positions

__all__ = ["Decoder", "KVCache", "LMConfig", "init_cache", "next_positions", "prompt_positions"]
