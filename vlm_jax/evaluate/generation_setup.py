"""Model, tokenizer, image processor and template for generation, from a training workdir or a HF directory.

* A training workdir (``DIR/checkpoints``): the newest checkpoint's parameters
  (:func:`vlm_jax.state.restore.restore_params`, sharded over all devices on the ``fsdp`` axis). The run
  config stored with the checkpoint gives the tiling, the template and the tokenizer
  (``config.data.tokenizer`` or the default vocabulary cached in ``DIR/cache``) unless a config is given.
* A HF directory (``config.json`` present) of any family of :data:`vlm_jax.interop.mappings.vlms.VLMS`
  (llava-hf, LLaVA-NeXT, InternVL, InternVL2's released ``internvl_chat``, the original LLaVA layout), recognised
  from its ``config.json``: :func:`load_vlm_from_hf_dir`. A config is required for the tiling and the template
  (``config.data``); the tokenizer is ``tokenizer_path`` or the directory's own
  (:func:`~vlm_jax.data.tokenizer.load_tokenizer`: ``tokenizer.json`` or ``tokenizer.model`` with its config
  files), and its image token is the model's placeholder (families whose ``config.json`` does not record it, e.g.
  ``internvl_chat``'s ``<IMG_CONTEXT>``; a recorded one must agree).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
from flax import nnx
from jax.sharding import Mesh

from vlm_jax import sharding
from vlm_jax.data.processor import ImageProcessor
from vlm_jax.data.tokenizer import Tokenizer, load_tokenizer
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir
from vlm_jax.model import VLM
from vlm_jax.run_config.build_data import build_tokenizer
from vlm_jax.state.restore import read_run_meta, restore_params


@dataclasses.dataclass
class InferenceBundle:
    """What :func:`~vlm_jax.evaluate.generate_text.generate_text` needs; run it under ``mesh`` when set."""

    model: VLM
    tokenizer: Tokenizer
    processor: ImageProcessor
    template: str
    mesh: Mesh | None


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config stored with the newest checkpoint of a training run."""
    return ml_collections.ConfigDict(read_run_meta(workdir)["config"])


def _hf_tokenizer(path: str, tokenizer_path: str | None) -> Tokenizer:
    try:
        return load_tokenizer(tokenizer_path or path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no tokenizer for the HF directory {path} ({e}): pass --tokenizer=PATH") from e


def load_for_generation(checkpoint: str, config: Any = None, tokenizer_path: str | None = None) -> InferenceBundle:
    """Everything needed to generate from ``checkpoint`` (module docstring for the two kinds of directory)."""
    if os.path.isfile(os.path.join(checkpoint, "config.json")):
        if config is None:
            raise ValueError("a HF checkpoint needs --config for the tiling and chat template (config.data)")
        tokenizer = _hf_tokenizer(checkpoint, tokenizer_path)
        model, mesh = load_vlm_from_hf_dir(checkpoint, image_token_id=tokenizer.image_token_id), None
    elif os.path.isdir(os.path.join(checkpoint, "checkpoints")):
        config = run_config(checkpoint) if config is None else config
        mesh = sharding.make_mesh(data=1, fsdp=-1)
        _, graphdef, params = restore_params(checkpoint, mesh=mesh)
        model = nnx.merge(graphdef, params)
        tokenizer = (load_tokenizer(tokenizer_path) if tokenizer_path
                     else build_tokenizer(config.data, os.path.join(checkpoint, "cache")))
    else:
        raise FileNotFoundError(f"{checkpoint} is neither a training workdir (no checkpoints/) nor a HF directory "
                                "(no config.json)")
    processor = ImageProcessor(config.data.tiling.to_dict(), model.cfg)
    return InferenceBundle(model, tokenizer, processor, config.data.template, mesh)
