"""Building blocks shared by ``configs/*.py``. Every block lists all of its keys (the typed blocks'
defaults filled in, ``None`` ones as typed placeholders), so every key can be overridden from the command line
(``--config.train.stop_at=100``) and a key that does not exist fails (``--config.train.lr_typo=1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from vlm_jax import presets
from vlm_jax.config_loading import check_config
from vlm_jax.config_util import config_block, unknown_keys_message, with_placeholders
from vlm_jax.model_config import VLMConfig
from vlm_jax.run_config import DEFAULT_STREAM, DataConfig, DataStream, InitConfig, RunConfig, TrainConfig, source_block

LLAVA_JSON_ARGS = ("data", "images", "tokenizer", "batch_size", "init")  # read by llava_json_data + init
CAPTION_ARGS = ("captions", "caption_images")  # read by caption_stream


def parse_args(arg: str | None, known: Iterable[str], tiny: Iterable[str] | None = None) -> dict[str, str]:
    """``"a=1,b=x"`` → ``{"a": "1", "b": "x"}``; a bare word ``tiny`` → ``{"tiny": "1"}``.

    ``known`` are the arguments the config reads; ``tiny`` (if the config has a tiny variant) those its tiny
    variant reads. Any other argument raises with the closest known ones.
    """
    out = {}
    for part in (arg or "").split(","):
        if part:
            key, _, value = part.partition("=")
            out[key] = value or "1"
    allowed = set(known) if tiny is None or "tiny" not in out else {"tiny", *tiny}
    unknown = set(out) - allowed
    if unknown:
        variant = " of the tiny variant" if tiny is not None and "tiny" in out else ""
        raise ValueError(unknown_keys_message(f"config argument{variant}", unknown, allowed))
    return out


def pick_stage(args: Mapping[str, str], stages: Mapping[str, Any], default: str) -> tuple[str, Any]:
    """The ``:stage=NAME`` argument of a config whose stages are run as separate jobs (LLaVA's pretrain /
    finetune); unknown names fail."""
    name = args.get("stage", default)
    if name not in stages:
        raise ValueError(f"stage={name!r}; known: {sorted(stages)}")
    return name, stages[name]


def make_config(*, model: Mapping[str, Any], data: Mapping[str, Any], train: Mapping[str, Any],
                mesh: Mapping[str, int], init: Mapping[str, Any] | None = None,
                datasets: Mapping[str, Mapping[str, Any]] | None = None) -> ml_collections.ConfigDict:
    """The ``get_config()`` result: the blocks as a ConfigDict in which every key can be overridden (``None``
    values as typed placeholders, lists as tuples), checked like a config loaded by the CLI (typed blocks +
    ``VLMConfig``). ``datasets``: the named data blocks of the recipe stages besides ``data``
    (:func:`stream_block`)."""
    blocks = dict(data=data, train=train, mesh=mesh, datasets=dict(datasets or {}),
                  init=config_block(InitConfig, "config.init", **(init or {})))
    config = ml_collections.ConfigDict(dict(model=with_placeholders(VLMConfig, model),
                                            **with_placeholders(RunConfig, blocks)))
    check_config(config)
    return config


def train_block(recipe: Sequence[Mapping[str, Any]], **values) -> dict[str, Any]:
    """``config.train`` (:class:`~vlm_jax.run_config.TrainConfig`): ``values`` over the defaults; every stage
    lists its ``data`` block (``--config.train.recipe[0].data=NAME`` switches it)."""
    return config_block(TrainConfig, "config.train", recipe=[{"data": DEFAULT_STREAM, **r} for r in recipe],
                        **values)


def data_block(**values) -> dict[str, Any]:
    """``config.data`` (:class:`~vlm_jax.run_config.DataConfig`): ``values`` over the defaults."""
    return config_block(DataConfig, "config.data", **values)


def stream_block(name: str, source: Mapping[str, Any], **values) -> dict[str, Any]:
    """``config.datasets.<name>`` (:class:`~vlm_jax.run_config.DataStream`: template, global ``batch_size``,
    ``accum``, ``seq_buckets``), reading ``source`` (:func:`~vlm_jax.run_config.source_block`)."""
    return config_block(DataStream, f"config.datasets.{name}", source=dict(source), **values)


def _entitygrid_source(split: str, size: int, canvas: int, seed: int = 0, what: str = "config.data.source"):
    return source_block("entitygrid", what, split=split, size=size, seed=seed, canvas=canvas)


def entitygrid_data(tiling: Mapping[str, Any], *, canvas: int, batch_size: int, seq_buckets: Sequence[int],
                    train_size: int = 200_000, eval_size: int = 3240, template: str = "chatml",
                    accum: int = 1) -> dict[str, Any]:
    """Generated EntityGrid-QA v2 (spec §4.3) with the embedded default tokenizer; the 3,240 test questions are
    6 full balance periods (1,080 per task, 540 per edge flag)."""
    return data_block(source=_entitygrid_source("train", train_size, canvas),
                      eval_source=_entitygrid_source("test", eval_size, canvas, what="config.data.eval_source"),
                      tiling=dict(tiling), tokenizer="", template=template, batch_size=batch_size, accum=accum,
                      seq_buckets=tuple(seq_buckets), worker_count=0)


def entitygrid_stream(name: str, *, canvas: int, seed: int, template: str, batch_size: int,
                      seq_buckets: Sequence[int], accum: int = 1, train_size: int = 200_000) -> dict[str, Any]:
    """A ``config.datasets`` block of generated EntityGrid-QA: the tiny variants' stand-in for a stage's data (with
    the ``plain`` template its answers serve as captions); ``seed`` gives it examples of its own."""
    return stream_block(name, _entitygrid_source("train", train_size, canvas, seed, f"config.datasets.{name}.source"),
                        template=template, batch_size=batch_size, accum=accum, seq_buckets=tuple(seq_buckets))


def llava_json_data(args: Mapping[str, str], tiling: Mapping[str, Any], *, template: str, tokenizer: str,
                    batch_size: int, seq_buckets: Sequence[int], accum: int = 1) -> dict[str, Any]:
    """LLaVA-style conversation JSON + image folder (``:data=...,images=...,tokenizer=...``); ``batch_size`` is
    global (``:batch_size=N`` overrides it); no eval source (``--config.data.eval_source="{'kind': ..., ...}"``
    sets one)."""
    return data_block(source=source_block("llava_json", path=args.get("data", "/data/train.json"),
                                          image_root=args.get("images", "/data/images")),
                      tiling=dict(tiling), tokenizer=args.get("tokenizer", tokenizer), template=template,
                      batch_size=int(args.get("batch_size", batch_size)), accum=accum,
                      seq_buckets=tuple(seq_buckets), worker_count=8)


def llava_json_stream(name: str, path: str, image_root: str, *, template: str, batch_size: int,
                      seq_buckets: Sequence[int], accum: int = 1) -> dict[str, Any]:
    """A ``config.datasets`` block reading a LLaVA-style conversation JSON + image folder."""
    source = source_block("llava_json", f"config.datasets.{name}.source", path=path, image_root=image_root)
    return stream_block(name, source, template=template, batch_size=batch_size, accum=accum,
                        seq_buckets=tuple(seq_buckets))


def caption_stream(args: Mapping[str, str], *, batch_size: int, seq_buckets: Sequence[int], accum: int = 1,
                   name: str = "captions") -> dict[str, Any]:
    """The caption set of an alignment stage (LLaVA's 558K ``blip_laion_cc_sbu_558k.json``) with the ``plain``
    template: ``:captions=FILE,caption_images=DIR`` (default: the ``images`` folder)."""
    return llava_json_stream(name, args.get("captions", "/data/blip_laion_cc_sbu_558k.json"),
                             args.get("caption_images", args.get("images", "/data/images")), template="plain",
                             batch_size=batch_size, accum=accum, seq_buckets=seq_buckets)


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
