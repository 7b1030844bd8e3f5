"""A whole run config: the top-level blocks of ``configs/*.py`` and the typed ones host code reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_block, check_fields, plain
from vlm_jax.run_config.data import DataConfig
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
    """``config.init``: ``hf_dir`` is a Hugging Face checkpoint a fresh run starts from (empty: random init)."""

    hf_dir: str = ""

    def __post_init__(self):
        check_fields(self, "config.init")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The typed blocks of a run config. ``model`` stays a mapping here (``VLMConfig.from_dict`` types it; host
    code must not import the model)."""

    model: Mapping[str, Any]
    data: DataConfig
    train: TrainConfig
    mesh: MeshShape
    init: InitConfig = InitConfig()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunConfig:
        """Type every block of a loaded config (a ConfigDict); unknown keys anywhere raise, naming the block and
        the closest valid keys."""
        d = check_block(cls, plain(config), "config")
        return cls(model=d["model"], data=DataConfig.from_dict(d["data"]), train=TrainConfig.from_dict(d["train"]),
                   mesh=MeshShape(**check_block(MeshShape, d["mesh"], "config.mesh")),
                   init=InitConfig(**check_block(InitConfig, d.get("init") or {}, "config.init")))
