"""Hugging Face safetensors import / export (never pickle): one declarative table per checkpoint family
(:mod:`vlm_jax.interop.mappings`) applied in either direction by :mod:`vlm_jax.interop.apply_mapping`, streaming
tensor access (:mod:`vlm_jax.interop.checkpoint_io`) and the public loaders / exporters (``hf_vision``, ``hf_lm``,
``hf_vlm``, ``hf_export``)."""
