"""Typed, validated views of a run config's blocks (``config.train``, ``config.data`` and its sources,
``config.datasets``, ``config.mesh``, ``config.init``): frozen dataclasses built from the ml_collections config
when it is loaded. Unknown keys raise with the block's name and the closest valid keys; values are checked
(``log_every > 0`` ...). Host code reads them: nothing here imports jax, flax or the model.
"""

from vlm_jax.run_config.data import DEFAULT_STREAM, DataConfig, DataStream
from vlm_jax.run_config.run import InitConfig, MeshShape, RunConfig
from vlm_jax.run_config.sources import SOURCE_KINDS, SourceConfig, source_block, source_from_dict
from vlm_jax.run_config.stage import Stage, parse_recipe
from vlm_jax.run_config.train import TrainConfig

__all__ = ["DEFAULT_STREAM", "SOURCE_KINDS", "DataConfig", "DataStream", "InitConfig", "MeshShape", "RunConfig",
           "SourceConfig", "Stage", "TrainConfig", "parse_recipe", "source_block", "source_from_dict"]
