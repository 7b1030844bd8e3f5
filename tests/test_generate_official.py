"""``vlm-jax generate --checkpoint=DIR`` on the papers' official checkpoint layouts (INF-LLaVA, SliME).

There is no transformers class for these models, so this is the wiring test: a tiny checkpoint in each official
layout (tensors as in ``test_inf_llava_official.py`` / ``test_slime_official.py``, whose module parity tests prove
the mapping) with a Vicuna-style tokenizer is recognised from its directory alone, tiled by the paper's tiler
(INF-LLaVA's dual-perspective crops, SliME's UHD slices) and answered through the CLI; the printed answer equals
:func:`generate_text` on the bundle the CLI loads, and is not empty.
"""

import hf_builders as hb
import ml_collections
import numpy as np
import pytest
import tokenizer_builders as tb
import torch
import transformers as T
from PIL import Image
from test_inf_llava_official import spatial_embed_tensors
from test_llava_original_parity import original_config, original_tensors, write_original
from test_slime_official import CLIP as SLIME_CLIP
from test_slime_official import SLIME_FIELDS, official_tensors

from vlm_jax import cli
from vlm_jax.data.tokenizer import load_tokenizer
from vlm_jax.evaluate.generate_text import generate_text
from vlm_jax.evaluate.generation_setup import load_for_generation

PROMPT = "what is at top left of image"
CONFIG_FILE = """
import ml_collections

def get_config():
    return ml_collections.ConfigDict(dict(data=dict(tiling={tiling!r}, template="checkpoint")))
"""
# layout -> (vision config, tensors of the official layout from the LLaVA model, mm_* fields, tiling, dem / slime)
LAYOUTS = {
    "inf_llava": (hb.CLIP_V, lambda hf: {**original_tensors(hf), **spatial_embed_tensors(3)}, {},
                  dict(kind="dual", tile=32, n=3), "dem"),
    "slime": (SLIME_CLIP, official_tensors, SLIME_FIELDS, dict(kind="uhd", tile=32), "slime"),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def case(request, tmp_path_factory):
    vision, tensors, fields, tiling, stage = LAYOUTS[request.param]
    path = tmp_path_factory.mktemp(request.param)
    tb.write_sentencepiece(str(path), tb.train_sentencepiece(), "vicuna")
    tok = load_tokenizer(str(path))
    T.CLIPVisionConfig(**vision).save_pretrained(path / "clip")
    torch.manual_seed(3)
    text = T.LlamaConfig(**dict(hb.TEXT, vocab_size=tok.vocab_size))
    hf = hb.perturb(T.LlavaForConditionalGeneration(T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**vision), text_config=text, image_token_index=tok.image_token_id,
        vision_feature_layer=-2)), seed=3)
    write_original(path, tensors(hf), original_config(str(path / "clip"), vocab_size=tok.vocab_size, **fields))
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 90, 3), dtype=np.uint8)).save(path / "image.png")
    (path / "generate_config.py").write_text(CONFIG_FILE.format(tiling=tiling))
    config = ml_collections.ConfigDict(dict(data=dict(tiling=tiling, template="checkpoint")))
    return dict(path=str(path), config=config, stage=stage)


def test_cli_answers_from_the_official_layout(case, capsys):
    argv = cli.FLAGS(["vlm-jax", "generate", f"--checkpoint={case['path']}", f"--image={case['path']}/image.png",
                      f"--prompt={PROMPT}", "--max_new_tokens=5", f"--config={case['path']}/generate_config.py"])
    try:
        cli.main(argv)
    finally:
        cli.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    bundle = load_for_generation(case["path"], case["config"])
    assert getattr(bundle.model.cfg, case["stage"]) is not None  # recognised as the paper's family
    with open(f"{case['path']}/image.png", "rb") as f:
        answer = generate_text(bundle.model, bundle.tokenizer, bundle.processor, f.read(), PROMPT, bundle.template,
                               max_new_tokens=5)
    assert answer and printed == answer + "\n"
