"""One declarative table per checkpoint family: key names + tensor transforms (applied in both directions by
:mod:`vlm_jax.interop.apply_mapping`) and the config translation (:mod:`vlm_jax.interop.config_table`).

Towers (:mod:`.towers`): ``clip``, ``siglip``, ``internvit`` (vision); ``llama``, ``qwen2``, ``internlm2``
(decoders). Whole VLMs (:mod:`.vlms`): ``llava``, ``llava_next``, ``internvl``.
"""
