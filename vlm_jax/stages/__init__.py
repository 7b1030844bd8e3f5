"""High-resolution stages as declarations (site, view regrouping, requirements) and the token geometry
computed from them. Plain Python: host code (the data pipeline) imports this package, never the model."""

from vlm_jax.stages.geometry import ViewGroup, Views
from vlm_jax.stages.protocol import Site, Stage, StageConflict, active_stages
from vlm_jax.stages.registry import STAGES
from vlm_jax.stages.tokens import map_tokens, num_image_tokens, validate, visual_capacity

__all__ = ["STAGES", "Site", "Stage", "StageConflict", "ViewGroup", "Views", "active_stages", "map_tokens",
           "num_image_tokens", "validate", "visual_capacity"]
