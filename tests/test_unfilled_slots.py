"""No prediction from an unfilled image slot (issue 10, item 5).

SliME's static shapes give every prompt the image slots of its token count *before* the text-guided selection;
the selection keeps fewer. The model masks the unfilled slots; this checks, under every chat template, that the
logits of every text token and the greedy generation equal those of the hole-free prompt that has exactly the
kept tokens as slots (the "dynamic" computation).
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax import presets
from vlm_jax.data.templates import TEMPLATES, answer_stop_ids, tokenize_conversation
from vlm_jax.data.tokenizer import default_tokenizer
from vlm_jax.evaluate.generate import generate
from vlm_jax.model import VLM, VLMConfig

GRID = (2, 2)  # 4 slices + the global view


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = default_tokenizer(str(tmp_path_factory.mktemp("tok")))
    cfg = VLMConfig.from_dict(presets.slime_7b(
        vision=presets.tiny_vision("clip"), llm=presets.tiny_llm(vocab_size=tok.vocab_size), max_views=5,
        image_token_id=tok.image_token_id, slime=dict(global_grid=4, local_grid=2, num_heads=2, top_p=0.3)))
    model = VLM(cfg, rngs=nnx.Rngs(0))
    pixels = np.random.default_rng(0).normal(size=(1, 5, 32, 32, 3)).astype(np.float32)
    return tok, model, pixels


def _batch(tok, template, n_slots, pixels, answer):
    conv = [{"from": "human", "value": "<image>\nWhat colour is the circle?"}]
    if answer:
        conv.append({"from": "gpt", "value": "It is red."})
    ex = tokenize_conversation(tok, template, conv, n_slots)
    one = lambda a: np.asarray(a)[None]  # noqa: E731
    return {"pixels": pixels, "tile_mask": np.ones((1, 5), bool), "grid": np.asarray([GRID], np.int32),
            "orig_size": np.asarray([[64, 64]], np.int32), "tokens": one(ex.tokens),
            "valid": np.ones((1, len(ex.tokens)), bool), "image_slots": one(ex.image_slots),
            "loss_mask": one(ex.loss_mask), "prompt_mask": one(ex.prompt_mask)}


def _static_and_dynamic(tok, model, pixels, template, answer):
    cfg = model.cfg
    static = _batch(tok, template, cfg.num_image_tokens(5, GRID, (64, 64)), pixels, answer)
    arrays = {k: jnp.asarray(v) for k, v in static.items()}
    _, valid, aux = model.encode_images(arrays, model.llm.embed(arrays["tokens"]))
    kept = int(np.asarray(valid).sum())
    assert int(aux["slime_kept"][0]) < cfg.num_image_tokens(5, GRID, (64, 64)) - cfg.patch_side ** 2 - 1, \
        "the selection must leave holes for this test to mean anything"
    return static, _batch(tok, template, kept, pixels, answer)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_text_logits_equal_the_hole_free_prompt(setup, template):
    tok, model, pixels = setup
    static, dynamic = _static_and_dynamic(tok, model, pixels, template, answer=True)
    text_s = ~static["image_slots"][0]
    text_d = ~dynamic["image_slots"][0]
    np.testing.assert_array_equal(static["tokens"][0][text_s], dynamic["tokens"][0][text_d])
    logits_s = np.asarray(model({k: jnp.asarray(v) for k, v in static.items()}))[0]
    logits_d = np.asarray(model({k: jnp.asarray(v) for k, v in dynamic.items()}))[0]
    # every text token is predicted from the position before it: compare the logits of those positions
    pred_s = np.nonzero(text_s)[0][1:] - 1
    pred_d = np.nonzero(text_d)[0][1:] - 1
    np.testing.assert_allclose(logits_s[pred_s], logits_d[pred_d], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("template", ["plain", "chatml"])
def test_greedy_generation_equals_the_hole_free_prompt(setup, template):
    tok, model, pixels = setup
    static, dynamic = _static_and_dynamic(tok, model, pixels, template, answer=False)
    stop = answer_stop_ids(tok, template) or [tok.eos_id]
    out_s = generate(model, static, max_new_tokens=8, stop_ids=stop)
    out_d = generate(model, dynamic, max_new_tokens=8, stop_ids=stop)
    np.testing.assert_array_equal(np.asarray(out_s.tokens), np.asarray(out_d.tokens))
