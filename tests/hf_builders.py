"""Tiny random HF VLMs (spec/parity.md §1.2) and helpers that feed the same inputs to HF and to our Batch.

Shared by the VLM parity tests (logits, generation). Every HF parameter is perturbed after
construction (HF initialises norms to 1/0, biases to 0, InternVL layer-scale to 0.1), so a mis-mapped
tensor cannot hide behind a default value.
"""

import numpy as np
import torch
import transformers as T

IMG_TOK = 100  # image placeholder id (< vocab 128)
PAD_TOK = 0
CLIP_V = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=4, projection_dim=16)
INTERNVL_V = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=4)
TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=512)
PINPOINTS = [[32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]  # (H, W); ≤ 4 tiles of 32 px


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Add ``scale · N(0, 1)`` noise to every parameter (in place); returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


def build_llava(seed: int = 0, **config) -> T.LlavaForConditionalGeneration:
    """LLaVA-1.5 style: CLIP (layer -2, CLS dropped) + mlp2x_gelu + Llama; 64 tokens per image.
    ``config`` overrides ``LlavaConfig`` fields (e.g. ``vision_feature_select_strategy="full"``)."""
    torch.manual_seed(seed)
    fields = {**dict(image_token_index=IMG_TOK, image_seq_length=64, vision_feature_layer=-2,
                     vision_feature_select_strategy="default"), **config}
    cfg = T.LlavaConfig(vision_config=T.CLIPVisionConfig(**CLIP_V), text_config=T.LlamaConfig(**TEXT), **fields)
    return perturb(T.LlavaForConditionalGeneration(cfg), seed)


def build_llava_next(seed: int = 0) -> T.LlavaNextForConditionalGeneration:
    """LLaVA-NeXT: as :func:`build_llava` with anyres over :data:`PINPOINTS` (unpad + ``image_newline``)."""
    torch.manual_seed(seed)
    cfg = T.LlavaNextConfig(vision_config=T.CLIPVisionConfig(**CLIP_V), text_config=T.LlamaConfig(**TEXT),
                            image_token_index=IMG_TOK, image_grid_pinpoints=PINPOINTS, vision_feature_layer=-2,
                            vision_feature_select_strategy="default")
    return perturb(T.LlavaNextForConditionalGeneration(cfg), seed)


def build_internvl(seed: int = 0) -> T.InternVLForConditionalGeneration:
    """InternVL: InternViT (last layer) + pixel shuffle 0.5 + LN + MLP + Qwen2 (tied); 16 tokens per tile."""
    torch.manual_seed(seed)
    cfg = T.InternVLConfig(vision_config=T.InternVLVisionConfig(**INTERNVL_V), text_config=T.Qwen2Config(**TEXT),
                           image_token_id=IMG_TOK, image_seq_length=16, downsample_ratio=0.5)
    return perturb(T.InternVLForConditionalGeneration(cfg), seed)


def prompt(n_image_tokens: int, n_text: int, rng: np.random.Generator) -> np.ndarray:
    """``[BOS=1, IMG × n_image_tokens, text × n_text]`` with text ids in ``[2, IMG_TOK)``."""
    text = rng.integers(2, IMG_TOK, n_text)
    return np.concatenate([[1], np.full(n_image_tokens, IMG_TOK), text]).astype(np.int64)


def pad_right(rows: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token rows with :data:`PAD_TOK` → ``ids int64 [B, length]``, ``mask bool [B, length]``."""
    if max(len(r) for r in rows) > length:
        raise ValueError(f"a prompt is longer than {length}")
    ids = np.full((len(rows), length), PAD_TOK, np.int64)
    mask = np.zeros((len(rows), length), bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, True
    return ids, mask


def our_batch(ids: np.ndarray, mask: np.ndarray, views: list[np.ndarray], max_views: int,
              grids=None, orig_sizes=None) -> dict[str, np.ndarray]:
    """Our Batch from HF inputs: ``views[i]`` is example i's ``[n_i, 3, H, W]`` (HF crop / tile order).

    Pixels become NHWC padded to ``max_views`` with ``tile_mask``; ``image_slots`` are the image
    tokens; ``grid`` (rows, cols) and ``orig_size`` (H, W) default to 1×1 and the tile size.
    """
    b = len(views)
    h, w = views[0].shape[-2:]
    pixels = np.zeros((b, max_views, h, w, 3), np.float32)
    tile_mask = np.zeros((b, max_views), bool)
    for i, v in enumerate(views):
        pixels[i, :len(v)] = np.asarray(v, np.float32).transpose(0, 2, 3, 1)
        tile_mask[i, :len(v)] = True
    return {
        "pixels": pixels, "tile_mask": tile_mask,
        "grid": np.asarray(grids if grids is not None else [(1, 1)] * b, np.int32),
        "orig_size": np.asarray(orig_sizes if orig_sizes is not None else [(h, w)] * b, np.int32),
        "tokens": ids.astype(np.int32), "valid": mask, "image_slots": (ids == IMG_TOK) & mask,
    }


def internlm2_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """InternLM2's fused ``wqkv [K·(G+2)·Dh, D]`` from HF ``q [H·Dh, D]``, ``k``, ``v [K·Dh, D]``: per kv head its
    ``G`` query heads, then its key, then its value (``modeling_internlm2.py`` splits the projection with
    ``rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=G + 2)``)."""
    d, dh = q.shape[1], k.shape[0] // kv_heads
    g = q.shape[0] // (kv_heads * dh)
    parts = [q.reshape(kv_heads, g, dh, d), k.reshape(kv_heads, 1, dh, d), v.reshape(kv_heads, 1, dh, d)]
    return torch.cat(parts, dim=1).reshape(-1, d)


def internlm2_tensors(sd: dict, body: str, head: str, layers: int, kv_heads: int) -> dict:
    """A Llama's tensors (``{body}embed_tokens`` / ``{body}layers.{i}…`` / ``{body}norm``, head ``head``) under
    InternLM2's names: ``model.tok_embeddings``, ``model.layers.{i}.attention.{wqkv,wo}``,
    ``feed_forward.{w1,w3,w2}`` (gate, up, down), ``attention_norm`` / ``ffn_norm``, ``model.norm``, ``output``."""
    out = {"model.tok_embeddings.weight": sd[body + "embed_tokens.weight"],
           "model.norm.weight": sd[body + "norm.weight"], "output.weight": sd[head]}
    for i in range(layers):
        src, dst = f"{body}layers.{i}.", f"model.layers.{i}."
        out[dst + "attention.wqkv.weight"] = internlm2_wqkv(
            *(sd[src + f"self_attn.{p}_proj.weight"] for p in "qkv"), kv_heads)
        out[dst + "attention.wo.weight"] = sd[src + "self_attn.o_proj.weight"]
        for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
            out[dst + f"feed_forward.{ours}.weight"] = sd[src + f"mlp.{theirs}.weight"]
        out[dst + "attention_norm.weight"] = sd[src + "input_layernorm.weight"]
        out[dst + "ffn_norm.weight"] = sd[src + "post_attention_layernorm.weight"]
    return out


def internlm2_config(**fields) -> dict:
    """``config.json`` fields of InternLM2's remote-code ``InternLM2Config`` (no biases, untied head)."""
    return dict(dict(model_type="internlm2", architectures=["InternLM2ForCausalLM"], hidden_act="silu", bias=False,
                     rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="eager"),
                **fields)
