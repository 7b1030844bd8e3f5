"""The benchmark model in both frameworks: one random LLaVA-1.5-style VLM (CLIP-like ViT, ``mlp2x_gelu``,
Llama) built by transformers and loaded into vlm_jax from its ``save_pretrained`` directory, so both run the
same weights; and the same image-prompt inputs for both.

Sizes (issue 11): CLIP 4 layers × 256 at 336 px (patch 14, 576 patches + CLS, features of layer -2 with CLS
dropped: 576 visual tokens per image) and Llama 4 layers × 512 (8 heads of 64, MLP 1376, vocabulary 32000,
untied head): 49.5M parameters. A prompt is ``[BOS, <image> × 576, text…]``; the image placeholder is the last
vocabulary id.
"""

from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import torch
import transformers as T

from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir, vlm_config_from_hf
from vlm_jax.model import VLM, VLMConfig


@dataclasses.dataclass(frozen=True)
class LlavaSize:
    """Tower sizes of the benchmark model (``vit_*``: CLIP vision tower; ``llm_*``: Llama decoder)."""

    vit_width: int = 256
    vit_layers: int = 4
    vit_heads: int = 4
    vit_mlp: int = 1024
    image_size: int = 336
    patch: int = 14
    llm_width: int = 512
    llm_layers: int = 4
    llm_heads: int = 8
    llm_mlp: int = 1376
    vocab: int = 32000

    @property
    def image_tokens(self) -> int:
        """Visual tokens per image: the patch grid (CLS dropped)."""
        return (self.image_size // self.patch) ** 2

    @property
    def image_token_id(self) -> int:
        return self.vocab - 1


SIZES = {  # by size class (benchmarks.context.SIZES)
    "full": LlavaSize(),
    "quick": LlavaSize(vit_width=128, vit_layers=2, vit_heads=2, vit_mlp=512, image_size=224, llm_width=256,
                       llm_layers=2, llm_heads=4, llm_mlp=688, vocab=8000),
    "tiny": LlavaSize(vit_width=32, vit_layers=2, vit_heads=2, vit_mlp=64, image_size=56, llm_width=64,
                      llm_layers=2, llm_heads=2, llm_mlp=128, vocab=512),
}


def hf_config(size: LlavaSize) -> T.LlavaConfig:
    """The HF ``LlavaConfig`` of ``size`` (layer -2 features, CLS dropped; HF's default attention, SDPA)."""
    vision = T.CLIPVisionConfig(hidden_size=size.vit_width, intermediate_size=size.vit_mlp,
                                num_hidden_layers=size.vit_layers, num_attention_heads=size.vit_heads,
                                image_size=size.image_size, patch_size=size.patch, projection_dim=size.vit_width)
    text = T.LlamaConfig(vocab_size=size.vocab, hidden_size=size.llm_width, intermediate_size=size.llm_mlp,
                         num_hidden_layers=size.llm_layers, num_attention_heads=size.llm_heads,
                         num_key_value_heads=size.llm_heads, max_position_embeddings=4096)
    return T.LlavaConfig(vision_config=vision, text_config=text, image_token_index=size.image_token_id,
                         image_seq_length=size.image_tokens, vision_feature_layer=-2,
                         vision_feature_select_strategy="default")


def our_config(size: LlavaSize) -> VLMConfig:
    """vlm_jax's config of the same model (through the HF config mapping)."""
    return vlm_config_from_hf(hf_config(size).to_dict())


def build_pair(size: LlavaSize, seed: int = 0) -> tuple[T.LlavaForConditionalGeneration, VLM]:
    """``(hf_model, our_model)`` with identical random weights (HF init, saved and loaded by vlm_jax)."""
    torch.manual_seed(seed)
    hf = T.LlavaForConditionalGeneration(hf_config(size)).eval()
    with tempfile.TemporaryDirectory() as path:
        hf.save_pretrained(path)
        ours = load_vlm_from_hf_dir(path)
    return hf, ours


@dataclasses.dataclass(frozen=True)
class ImagePrompts:
    """The same inputs for both frameworks: ``batch`` (our Batch, one view per example) and HF's tensors."""

    batch: dict[str, np.ndarray]
    input_ids: torch.Tensor
    pixel_values: torch.Tensor
    labels: torch.Tensor

    @property
    def hf_inputs(self) -> dict[str, torch.Tensor]:
        return dict(input_ids=self.input_ids, attention_mask=torch.ones_like(self.input_ids),
                    pixel_values=self.pixel_values)


def image_prompts(size: LlavaSize, batch_size: int, seq_len: int, answer_len: int, seed: int = 0) -> ImagePrompts:
    """``batch_size`` prompts of exactly ``seq_len`` tokens ``[BOS, <image> × 576, text…]`` (no padding) with a
    random image each; the loss is on the last ``answer_len`` tokens (HF ``labels`` are -100 elsewhere).

    Our Batch: ``pixels [B, 1, S, S, 3]`` (NHWC), ``tokens [B, L]`` …; HF: ``pixel_values [B, 3, S, S]``.
    """
    n_text = seq_len - 1 - size.image_tokens
    if n_text < answer_len or answer_len < 1:
        raise ValueError(f"seq_len={seq_len} leaves {n_text} text tokens for a {answer_len}-token answer")
    rng = np.random.default_rng(seed)
    text = rng.integers(2, size.image_token_id, (batch_size, n_text))
    ids = np.concatenate([np.ones((batch_size, 1), np.int64),
                          np.full((batch_size, size.image_tokens), size.image_token_id), text], axis=1)
    pixels = rng.standard_normal((batch_size, 3, size.image_size, size.image_size)).astype(np.float32)
    loss_mask = np.zeros(ids.shape, bool)
    loss_mask[:, -answer_len:] = True
    ones = np.ones((batch_size, 1), bool)
    batch = {
        "pixels": pixels.transpose(0, 2, 3, 1)[:, None], "tile_mask": ones,
        "grid": np.ones((batch_size, 2), np.int32),
        "orig_size": np.full((batch_size, 2), size.image_size, np.int32),
        "tokens": ids.astype(np.int32), "valid": np.ones(ids.shape, bool),
        "image_slots": ids == size.image_token_id, "loss_mask": loss_mask,
    }
    labels = np.where(loss_mask, ids, -100)
    return ImagePrompts(batch, torch.from_numpy(ids), torch.from_numpy(pixels), torch.from_numpy(labels))


def llm_weight_bytes(size: LlavaSize) -> int:
    """Bytes of float32 LLM weights one decode step reads: every layer, the final norm and the head (the
    embedding table only gives one row per token, so it is left out)."""
    d, f = size.llm_width, size.llm_mlp
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    return 4 * (size.llm_layers * per_layer + d + d * size.vocab)
