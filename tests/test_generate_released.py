"""``vlm-jax generate --checkpoint=DIR`` on released checkpoint layouts, against transformers' greedy generation.

Each directory is written from a tiny perturbed transformers model in a released layout, with a tokenizer in the
form the checkpoint ships: ``internvl_chat`` (InternVL2, as in ``test_internvl_chat_parity.py``) with an
InternLM2-style SentencePiece tokenizer (``<IMG_CONTEXT>`` added), and the original LLaVA layout (as in
``test_llava_original_parity.py``) with a Vicuna-style one (``<image>`` in ``added_tokens.json``); both with their
own chat template. The CLI's answer must be the text of the tokens transformers' ``generate`` (greedy) produces from
the same prompt ids and pixels; the image placeholder id comes from the tokenizer (neither ``config.json``
records it).
"""

import json

import hf_builders as hb
import jax
import ml_collections
import numpy as np
import pytest
import safetensors.torch
import tokenizer_builders as tb
import torch
import transformers as T
from PIL import Image
from test_internvl_chat_parity import TEXT, VISION, chat_config, released_tensors
from test_llava_original_parity import original_config, original_tensors, write_original

from vlm_jax import cli
from vlm_jax.data.templates import answer_stop_ids
from vlm_jax.data.tokenizer import load_tokenizer
from vlm_jax.evaluate.generate_text import decode_generated, prompt_batch
from vlm_jax.evaluate.generation_setup import load_for_generation

PROMPT = "what is at top left of image"
NEW_TOKENS = 8
TEMPLATE = "checkpoint"  # the tokenizer's own chat template
CONFIG_FILE = """
import ml_collections

def get_config():
    return ml_collections.ConfigDict(dict(data=dict(tiling={tiling!r}, template="checkpoint")))
"""


def _internvl_chat(path, rng_seed: int):
    """InternVL2's released layout; 30x60 image → 1x2 tiles + thumbnail."""
    tb.write_sentencepiece(str(path), tb.train_sentencepiece(), "internlm2")
    tok = load_tokenizer(str(path))
    text = dict(TEXT, vocab_size=tok.vocab_size + 1)
    cfg = T.InternVLConfig(vision_config=T.InternVLVisionConfig(**VISION), text_config=T.LlamaConfig(**text),
                           image_token_id=tok.image_token_id, image_seq_length=16, downsample_ratio=0.5,
                           tie_word_embeddings=False)
    hf = hb.perturb(T.InternVLForConditionalGeneration(cfg), seed=rng_seed)
    tensors = released_tensors(hf)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    llm = hb.internlm2_config(**{k: v for k, v in text.items() if k != "tie_word_embeddings"})
    (path / "config.json").write_text(json.dumps(chat_config(llm_config=llm)))
    return hf, tok, dict(kind="internvl", tile=32, max_tiles=3, thumbnail=True, norm="imagenet"), 3 * 16


def _llava_original(path, rng_seed: int):
    """The original LLaVA layout (CLIP tower stored, ``mm_vision_tower`` = a local CLIP directory); one view."""
    tb.write_sentencepiece(str(path), tb.train_sentencepiece(), "vicuna")
    tok = load_tokenizer(str(path))
    T.CLIPVisionConfig(**hb.CLIP_V).save_pretrained(path / "clip")
    torch.manual_seed(rng_seed)
    hf = hb.perturb(T.LlavaForConditionalGeneration(T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**hb.CLIP_V), text_config=T.LlamaConfig(**dict(hb.TEXT,
                                                                                       vocab_size=tok.vocab_size)),
        image_token_index=tok.image_token_id, vision_feature_layer=-2)), seed=rng_seed)
    config = original_config(str(path / "clip"), vocab_size=tok.vocab_size)
    write_original(path, original_tensors(hf), config)
    return hf, tok, dict(kind="fixed", tile=32, norm="clip"), 64


LAYOUTS = {"internvl_chat": _internvl_chat, "llava_original": _llava_original}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def case(request, tmp_path_factory):
    """A released-layout directory with its tokenizer, the transformers model it was written from, an image."""
    path = tmp_path_factory.mktemp(request.param)
    hf, tok, tiling, n_image = LAYOUTS[request.param](path, 7)
    image = np.random.default_rng(7).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(path / "image.png")
    (path / "generate_config.py").write_text(CONFIG_FILE.format(tiling=tiling))
    config = ml_collections.ConfigDict(dict(data=dict(tiling=tiling, template=TEMPLATE)))
    return dict(path=str(path), hf=hf, image=image, tokenizer=tok, config=config, n_image=n_image)


def _hf_answer(case) -> list[int]:
    """transformers' greedy continuation of our prompt (same ids, same pixels), stopping at our stop ids."""
    tok, hf = case["tokenizer"], case["hf"]
    bundle = load_for_generation(case["path"], case["config"])
    batch = prompt_batch(tok, bundle.processor, case["image"], PROMPT, TEMPLATE)
    ids = batch["tokens"][0][batch["valid"][0]]
    pixels = batch["pixels"][0][batch["tile_mask"][0]].transpose(0, 3, 1, 2)
    assert (ids == tok.image_token_id).sum() == case["n_image"]
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor(ids[None].astype(np.int64)), pixel_values=torch.tensor(pixels),
                          max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=answer_stop_ids(tok, TEMPLATE),
                          pad_token_id=tok.pad_id)
    return out[0, len(ids):].tolist()


def test_cli_generates_what_transformers_generates(case, capsys):
    bundle = load_for_generation(case["path"], case["config"])
    assert bundle.model.cfg.image_token_id == case["tokenizer"].image_token_id
    expected_ids = _hf_answer(case)
    assert len(expected_ids) >= 2, "the reference answer is too short to compare"
    finished = expected_ids[-1] in answer_stop_ids(case["tokenizer"], TEMPLATE)
    expected = decode_generated(case["tokenizer"], np.asarray(expected_ids), len(expected_ids), finished)
    argv = cli.FLAGS(["vlm-jax", "generate", f"--checkpoint={case['path']}", f"--image={case['path']}/image.png",
                      f"--prompt={PROMPT}", f"--max_new_tokens={NEW_TOKENS}",
                      f"--config={case['path']}/generate_config.py"])
    try:
        cli.main(argv)
    finally:
        cli.FLAGS.unparse_flags()
    assert capsys.readouterr().out == expected + "\n"
    assert jax.devices()


def test_a_recorded_image_token_must_agree_with_the_tokenizer(tmp_path):
    """A config.json that records the placeholder (llava-hf) and a tokenizer whose image token differs: refused."""
    hb.build_llava(seed=0).save_pretrained(tmp_path)  # records image_token_index = hb.IMG_TOK
    tb.write_sentencepiece(str(tmp_path), tb.train_sentencepiece(), "internlm2")  # <IMG_CONTEXT> ≠ hb.IMG_TOK
    config = ml_collections.ConfigDict(dict(data=dict(tiling=dict(kind="fixed"), template=TEMPLATE)))
    with pytest.raises(ValueError, match="records image token id"):
        load_for_generation(str(tmp_path), config)
