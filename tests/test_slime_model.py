"""SliME inside the VLM: which text tokens guide the selection, and the token-id separator."""

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx
from tiny_models import random_batch

from vlm_jax import presets
from vlm_jax.model import VLM, VLMConfig


def _model(**slime):
    cfg = VLMConfig.from_dict(presets.slime_7b(
        vision=presets.tiny_vision("clip"), llm=presets.tiny_llm(), max_views=5, image_token_id=100,
        slime=dict(global_grid=4, local_grid=2, num_heads=2, top_p=0.3, **slime)))
    return VLM(cfg, rngs=nnx.Rngs(0))


def _visual(model, batch):
    out, valid, _ = model.encode_images(batch, model.llm.embed(jnp.asarray(batch["tokens"])))
    return np.asarray(out), np.asarray(valid)


def _batch(model):
    batch = random_batch(model.cfg, batch_size=4, seq_len=112, seed=1)
    for i in range(4):  # instruction = the two tokens after the image, answers = the rest
        last_slot = np.nonzero(batch["image_slots"][i])[0].max()
        batch["prompt_mask"][i, last_slot + 1:last_slot + 3] = True
        batch["loss_mask"][i, :last_slot + 3] = False
    return batch


def _change_answers(batch):
    changed = {k: v.copy() for k, v in batch.items()}
    changed["tokens"] = np.where(batch["loss_mask"], (batch["tokens"] * 7 + 3) % 100, batch["tokens"])
    return changed


def test_answers_never_guide_the_default_selection():
    model = _model()
    batch = _batch(model)
    np.testing.assert_array_equal(_visual(model, batch)[0], _visual(model, _change_answers(batch))[0])


def test_code_behaviour_lets_answers_guide_the_selection():
    model = _model(text_tokens="all")
    batch = _batch(model)
    (a, va), (b, vb) = _visual(model, batch), _visual(model, _change_answers(batch))
    assert not (np.array_equal(a, b) and np.array_equal(va, vb))


def test_token_separator_is_the_llm_embedding_of_its_id():
    model = _model(separator="token", separator_token_id=7)
    batch = _batch(model)
    out, _ = _visual(model, batch)
    patches = model.cfg.patch_side ** 2
    sep = np.asarray(model.llm.embed(jnp.full((1, 1), 7, jnp.int32)))[0, 0]
    np.testing.assert_allclose(out[:, patches], np.broadcast_to(sep, out[:, patches].shape), rtol=1e-6)
    assert dataclasses.asdict(model.cfg.slime)["separator"] == "token"
