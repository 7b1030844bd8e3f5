"""``vlm-jax generate --checkpoint=DIR`` on released checkpoint layouts, against transformers' greedy generation.

An ``internvl_chat`` directory (InternVL2's released layout, written from a tiny perturbed transformers InternVL as
in ``test_internvl_chat_parity.py``) with an InternLM2-style SentencePiece tokenizer (``<IMG_CONTEXT>`` as an added
token, the checkpoint's own chat template): the CLI's answer must be the text of the tokens transformers'
``generate`` (greedy) produces from the same prompt ids and pixels, and the image placeholder id comes from the
tokenizer (the ``config.json`` does not record it).
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

from vlm_jax import cli
from vlm_jax.data.templates import answer_stop_ids
from vlm_jax.data.tokenizer import load_tokenizer
from vlm_jax.evaluate.generate_text import decode_generated, prompt_batch
from vlm_jax.evaluate.generation_setup import load_for_generation

PROMPT = "what is at top left of image"
NEW_TOKENS = 8
TILING = dict(kind="internvl", tile=32, max_tiles=3, thumbnail=True, norm="imagenet")
CONFIG_FILE = f"""
import ml_collections

def get_config():
    return ml_collections.ConfigDict(dict(data=dict(tiling={TILING!r}, template="checkpoint")))
"""


@pytest.fixture(scope="module")
def internvl_chat_dir(tmp_path_factory):
    """A released-layout directory with its tokenizer, the transformers model it was written from, an image."""
    path = tmp_path_factory.mktemp("internvl_chat")
    tb.write_sentencepiece(str(path), tb.train_sentencepiece(), "internlm2")
    tok = load_tokenizer(str(path))
    text = dict(TEXT, vocab_size=tok.vocab_size + 1)
    torch.manual_seed(7)
    cfg = T.InternVLConfig(vision_config=T.InternVLVisionConfig(**VISION), text_config=T.LlamaConfig(**text),
                           image_token_id=tok.image_token_id, image_seq_length=16, downsample_ratio=0.5,
                           tie_word_embeddings=False)
    hf = hb.perturb(T.InternVLForConditionalGeneration(cfg), seed=7)
    tensors = released_tensors(hf)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    llm = hb.internlm2_config(**{k: v for k, v in text.items() if k != "tie_word_embeddings"})
    (path / "config.json").write_text(json.dumps(chat_config(llm_config=llm)))
    image = np.random.default_rng(7).integers(0, 256, (30, 60, 3), dtype=np.uint8)  # 1x2 tiles + thumbnail
    Image.fromarray(image).save(path / "image.png")
    (path / "generate_config.py").write_text(CONFIG_FILE)
    return dict(path=str(path), hf=hf, image=image, tokenizer=tok)


def _hf_answer(case, config) -> list[int]:
    """transformers' greedy continuation of our prompt (same ids, same pixels), stopping at our stop ids."""
    tok, hf = case["tokenizer"], case["hf"]
    bundle = load_for_generation(case["path"], config)
    batch = prompt_batch(tok, bundle.processor, case["image"], PROMPT, "checkpoint")
    ids = batch["tokens"][0][batch["valid"][0]]
    pixels = batch["pixels"][0][batch["tile_mask"][0]].transpose(0, 3, 1, 2)
    assert len(pixels) == 3 and (ids == tok.image_token_id).sum() == 3 * 16
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor(ids[None].astype(np.int64)), pixel_values=torch.tensor(pixels),
                          max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=answer_stop_ids(tok, "checkpoint"),
                          pad_token_id=tok.pad_id)
    return out[0, len(ids):].tolist()


def test_cli_generates_what_transformers_generates(internvl_chat_dir, capsys):
    case = internvl_chat_dir
    config = ml_collections.ConfigDict(dict(data=dict(tiling=TILING, template="checkpoint")))
    bundle = load_for_generation(case["path"], config)
    assert bundle.model.cfg.image_token_id == case["tokenizer"].image_token_id
    expected_ids = _hf_answer(case, config)
    stops = answer_stop_ids(case["tokenizer"], "checkpoint")
    finished = bool(expected_ids) and expected_ids[-1] in stops
    expected = decode_generated(case["tokenizer"], np.asarray(expected_ids), len(expected_ids), finished)
    argv = cli.FLAGS(["vlm-jax", "generate", f"--checkpoint={case['path']}", f"--image={case['path']}/image.png",
                      f"--prompt={PROMPT}", f"--max_new_tokens={NEW_TOKENS}",
                      f"--config={case['path']}/generate_config.py"])
    try:
        cli.main(argv)
    finally:
        cli.FLAGS.unparse_flags()
    assert len(expected_ids) >= 2, "the reference answer is too short to compare"
    assert capsys.readouterr().out == expected + "\n"
    assert jax.devices()


def test_a_recorded_image_token_must_agree_with_the_tokenizer(internvl_chat_dir, tmp_path):
    """A config.json that records the placeholder (llava-hf) and a tokenizer whose image token differs: refused."""
    hb.build_llava(seed=0).save_pretrained(tmp_path)  # records image_token_index = hb.IMG_TOK
    tb.write_sentencepiece(str(tmp_path), tb.train_sentencepiece(), "internlm2")  # <IMG_CONTEXT> ≠ hb.IMG_TOK
    config = ml_collections.ConfigDict(dict(data=dict(tiling=dict(kind="fixed"), template="checkpoint")))
    with pytest.raises(ValueError, match="records image token id"):
        load_for_generation(str(tmp_path), config)
