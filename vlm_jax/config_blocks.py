"""Building blocks shared by ``configs/*.py``: every block lists all of its keys, so a command-line
override of a key that does not exist fails (``--config.train.lr_typo=1`` is an error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax import presets


def parse_args(arg: str | None) -> dict[str, str]:
    """``"a=1,b=x"`` → ``{"a": "1", "b": "x"}``; a bare word ``tiny`` → ``{"tiny": "1"}``."""
    out = {}
    for part in (arg or "").split(","):
        if part:
            key, _, value = part.partition("=")
            out[key] = value or "1"
    return out


def pick_stage(args: Mapping[str, str], stages: Mapping[str, Any], default: str) -> tuple[str, Any]:
    """The ``:stage=NAME`` argument of a config whose stages are run as separate jobs (LLaVA's pretrain /
    finetune); unknown names fail."""
    name = args.get("stage", default)
    if name not in stages:
        raise ValueError(f"stage={name!r}; known: {sorted(stages)}")
    return name, stages[name]


def train_block(recipe: Sequence[Mapping[str, Any]], **overrides) -> dict[str, Any]:
    block = dict(
        seed=0, recipe=[dict(r) for r in recipe], z_loss=0.0, grad_clip=1.0, weight_decay=0.0, accum=1,
        log_every=10, ckpt_every=500, keep=2, keep_every=None,
        max_replicated=None,  # fail at start-up if more than this fraction of parameter bytes is replicated
        allow_data_change=False,  # resume even if the data config differs from the checkpoint's
        stop_at=None,  # end this run after step N (time-sliced / preemptible jobs); the next run resumes
        peak_flops=None,  # per-device peak FLOP/s for the MFU metric
    )
    unknown = set(overrides) - set(block)
    if unknown:
        raise ValueError(f"unknown train keys {sorted(unknown)}")
    block.update(overrides)
    return block


def entitygrid_data(tiling: Mapping[str, Any], *, canvas: int, batch_size: int, seq_buckets: Sequence[int],
                    train_size: int = 200_000, eval_size: int = 432, template: str = "chatml") -> dict[str, Any]:
    """Generated EntityGrid-QA (spec §4.3) with the embedded default tokenizer."""
    return dict(source=dict(kind="entitygrid", split="train", size=train_size, seed=0, canvas=canvas),
                eval_source=dict(kind="entitygrid", split="test", size=eval_size, seed=0, canvas=canvas),
                tiling=dict(tiling), tokenizer="", template=template, batch_size=batch_size,
                seq_buckets=tuple(seq_buckets), worker_count=0)


def llava_json_data(args: Mapping[str, str], tiling: Mapping[str, Any], *, template: str, tokenizer: str,
                    batch_size: int, seq_buckets: Sequence[int]) -> dict[str, Any]:
    """LLaVA-style conversation JSON + image folder (``:data=...,images=...,tokenizer=...``)."""
    return dict(source=dict(kind="llava_json", path=args.get("data", "/data/train.json"),
                            image_root=args.get("images", "/data/images")),
                eval_source=None, tiling=dict(tiling), tokenizer=args.get("tokenizer", tokenizer),
                template=template, batch_size=int(args.get("batch_size", batch_size)),
                seq_buckets=tuple(seq_buckets), worker_count=8)


BF16_POLICY = dict(params="float32", compute="bfloat16")
"""float32 master weights, bfloat16 compute in every module (``vlm_jax.nn.precision``)."""


def bf16(model: dict[str, Any]) -> dict[str, Any]:
    """The bf16 precision policy for the whole model (towers, projector, the papers' modules) and full remat
    in both towers."""
    return dict(model, precision=dict(BF16_POLICY), vision=dict(model["vision"], remat="full"),
                llm=dict(model["llm"], remat="full"))


def tiny_towers(model: dict[str, Any], *, vision_kind: str, tile: int = 32, patch: int = 8) -> dict[str, Any]:
    """Replace a real-size preset's towers with CPU-sized ones (vocab 512: the embedded tokenizer)."""
    llm = dict(presets.tiny_llm(vocab_size=512, hidden=64, layers=2), num_heads=4, num_kv_heads=2, head_dim=16)
    return dict(model, vision=presets.tiny_vision(vision_kind, image_size=tile, patch=patch, hidden=32),
                llm=llm, image_token_id=4)
