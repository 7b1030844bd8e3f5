r"""SliME-7B (Vicuna-7B): ``configs/slime_8b.py`` with ``llm=vicuna`` (paper Table 7 learning rates).

    vlm-jax train --workdir=/ckpt/slime_7b \
        --config=configs/slime_7b.py:data=/data/sharegpt4v_mix665k_smr.json,images=/data,captions=/data/blip_laion_cc_sbu_558k.json,caption_images=/data/llava_pretrain/images,tokenizer=/data/vicuna/tokenizer.model
    vlm-jax train --config=configs/slime_7b.py:tiny --workdir=/tmp/slime_tiny
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("slime_8b", os.path.join(os.path.dirname(__file__), "slime_8b.py"))
_slime_8b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_slime_8b)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return _slime_8b.get_config(",".join(filter(None, [arg, "llm=vicuna"])))
