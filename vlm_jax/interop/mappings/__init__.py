"""One declarative table per checkpoint family: key names + tensor transforms (applied in both directions by
:mod:`vlm_jax.interop.apply_mapping`) and the config translation (:mod:`vlm_jax.interop.config_table`).

Towers (registries in :mod:`.towers`): vision ``clip``, ``siglip``, ``internvit`` (transformers' InternVL
naming), ``intern_vit`` (InternViT's released layout); decoders ``llama``, ``qwen2``, ``internlm2``.
Whole VLMs (registry in :mod:`.vlms`): ``llava``, ``llava_next``, ``internvl`` (transformers-native, shared
config translation in :mod:`.transformers_vlm`); import only: ``internvl_chat`` (InternVL's released layout),
``llava_llama`` (:mod:`.llava_original`, the original LLaVA repository's layout) and the papers' official
checkpoints built on it, ``inf_llava`` (DEM as ``spatial_embed``) and ``slime`` (:mod:`.slime_official`); their
paper modules' tables are the family's ``module_keys``.

Adding a family: a tower is one file defining ``keys(cfg) -> KeyMapping``, a ``ConfigTable`` and a
``TowerFamily``, plus its entry in ``towers.VISION`` / ``towers.DECODERS``; a VLM is one file defining its
connector table, ``read_config`` (and ``write_config`` to export) and a ``VLMFamily`` naming its tower prefixes
and key normalisation, plus its entry in ``vlms.VLMS``. Import, export, the completeness checks and the
transform round-trip tests then apply to it unchanged.
"""
