"""A whole run config: the top-level blocks of ``configs/*.py`` and the typed ones host code reads."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_block, check_fields, plain, unknown_value_message
from vlm_jax.run_config.data import DEFAULT_STREAM, DataConfig, DataStream
from vlm_jax.run_config.stage import Stage
from vlm_jax.run_config.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """``config.mesh``: device mesh axis sizes (``vlm_jax.sharding.mesh_from_config``; -1: all remaining)."""

    data: int = 1
    fsdp: int = 1
    tensor: int = 1
    sequence: int = 1

    def __post_init__(self):
        rule = (lambda v: v >= 1 or v == -1, ">= 1 or -1")
        check_fields(self, "config.mesh", data=rule, fsdp=rule, tensor=rule, sequence=rule)


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """``config.init``: what a fresh run starts from (all empty: random initialisation).

    Attributes:
      hf_dir: a whole Hugging Face VLM checkpoint (any layout :mod:`vlm_jax.interop` reads).
      projector: with ``hf_dir``, load its projector too; None loads it only when no stage changes what the
        projector reads or replaces it (DEM, Self-Mining, SliME), and refuses otherwise.
      vision_dir, llm_dir: separate vision-tower and LLM checkpoints (the papers' start: CLIP-L/336 + an LLM, the
        projector and the papers' modules at their initialisation).
    """

    hf_dir: str = ""
    projector: bool | None = None
    vision_dir: str = ""
    llm_dir: str = ""

    def __post_init__(self):
        check_fields(self, "config.init")
        if self.hf_dir and (self.vision_dir or self.llm_dir):
            raise ValueError("config.init: hf_dir (a whole VLM) and vision_dir / llm_dir (separate towers) exclude "
                             "each other")
        if self.projector is not None and not self.hf_dir:
            raise ValueError("config.init.projector chooses whether hf_dir's projector is loaded; hf_dir is empty")


def _typed_datasets(d: Mapping[str, Any] | None) -> Mapping[str, DataStream]:
    d = plain(d or {})
    if DEFAULT_STREAM in d:
        raise ValueError(f"config.datasets.{DEFAULT_STREAM}: the name {DEFAULT_STREAM!r} is config.data's stream")
    return types.MappingProxyType({name: DataStream.from_dict(block, f"config.datasets.{name}")
                                   for name, block in d.items()})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The typed blocks of a run config. ``model`` stays a mapping here (``VLMConfig.from_dict`` types it; host
    code must not import the model).

    ``datasets`` are the named data streams besides ``data`` (:mod:`vlm_jax.run_config.data`); every stage's
    ``data`` names one of them or ``"default"`` (checked here, naming the stage).
    """

    model: Mapping[str, Any]
    data: DataConfig
    train: TrainConfig
    mesh: MeshShape
    init: InitConfig = InitConfig()
    datasets: Mapping[str, DataStream] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))

    def __post_init__(self):
        known = (DEFAULT_STREAM, *self.datasets)
        for i, stage in enumerate(self.train.recipe):
            if stage.data not in known:
                raise ValueError(f"config.train.recipe[{i}] (stage {stage.name!r}) reads no data block: "
                                 + unknown_value_message("data", stage.data, known)
                                 + " (the blocks of config.datasets, or 'default' for config.data)")

    def stream(self, stage: Stage) -> DataStream:
        """The data block ``stage.data`` names: ``config.data`` for ``"default"``, else ``config.datasets.<name>``."""
        return self.data if stage.data == DEFAULT_STREAM else self.datasets[stage.data]

    def data_identity(self, stage: Stage) -> dict[str, Any]:
        """What the batches of ``stage`` depend on (its block, the tiling and the tokenizer), for the checkpoint's
        data fingerprint."""
        return {"block": stage.data, "stream": self.stream(stage).identity(), "tiling": plain(self.data.tiling),
                "tokenizer": self.data.tokenizer}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunConfig:
        """Type every block of a loaded config (a ConfigDict); unknown keys anywhere raise, naming the block and
        the closest valid keys; a stage that names no data block raises, naming the stage."""
        d = check_block(cls, plain(config), "config")
        return cls(model=d["model"], data=DataConfig.from_dict(d["data"]), train=TrainConfig.from_dict(d["train"]),
                   mesh=MeshShape(**check_block(MeshShape, d["mesh"], "config.mesh")),
                   init=InitConfig(**check_block(InitConfig, d.get("init") or {}, "config.init")),
                   datasets=_typed_datasets(d.get("datasets")))
