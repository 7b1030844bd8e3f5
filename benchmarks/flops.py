"""Analytic FLOP count of the benchmark model (:mod:`benchmarks.llava_pair`), per component.

A multiply-add is 2 FLOPs; only matmuls are counted (norms, activations and softmax are a few percent).
Forward, per image: patch embedding ``2·P·(3p²)·Dv``; each ViT layer up to the selected one (layer -2, so
``layers - 1`` of them) over ``T = P + 1`` tokens: q/k/v/o ``8·T·Dv²``, MLP ``4·T·Dv·Fv``, scores and
weighted values ``4·T²·Dv``; projector ``2·P·(Dv·D + D²)``. Per token of the LLM: q/k/v/o ``8·D²`` and MLP
``6·D·F`` per layer, the head ``2·D·V`` at every position; causal attention ``4·D`` per (query, key ≤ query)
pair per layer. A train step is forward + backward = 3 × forward (every parameter trains).
"""

from __future__ import annotations

from benchmarks.llava_pair import LlavaSize


def forward_flops(size: LlavaSize, batch: int, seq_len: int) -> dict[str, float]:
    """FLOPs of one forward of ``batch`` prompts of ``seq_len`` tokens with one image each, by component."""
    p, dv, fv = size.image_tokens, size.vit_width, size.vit_mlp
    t = p + 1
    vit_layer = 8 * t * dv * dv + 4 * t * dv * fv + 4 * t * t * dv
    d, f, length = size.llm_width, size.llm_mlp, seq_len
    return {
        "vit": batch * (2 * p * 3 * size.patch ** 2 * dv + (size.vit_layers - 1) * vit_layer),
        "projector": batch * 2 * p * (dv * d + d * d),
        "llm_matmuls": batch * length * size.llm_layers * (8 * d * d + 6 * d * f),
        "llm_attention": batch * size.llm_layers * 4 * d * length * (length + 1) / 2,
        "head": batch * length * 2 * d * size.vocab,
    }


def train_step_flops(size: LlavaSize, batch: int, seq_len: int) -> dict[str, float]:
    """FLOPs of one train step (3 × forward), by component and ``total``."""
    parts = {k: 3 * v for k, v in forward_flops(size, batch, seq_len).items()}
    return {**parts, "total": sum(parts.values())}
