"""Generation: sampling functions vs transformers' logits processors, left alignment, greedy token parity
with HF ``generate`` (LLaVA-1.5, LLaVA-NeXT, InternVL), per-row stopping, compile counts, the CLI.

References: ``transformers.generation.logits_process`` (RepetitionPenaltyLogitsProcessor,
TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper) on random logits, float32 to 1e-6; HF
``model.generate(do_sample=False, max_new_tokens=8)`` run prompt by prompt (no padding) vs ONE padded
batch of ours: tokens must be identical.
"""

import hf_builders as hb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers.generation import logits_process as lp
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

from vlm_jax import sharding
from vlm_jax.evaluate.generate import generate, left_align, make_generate_fn
from vlm_jax.evaluate.generate_text import decode_generated, truncate_at_stop_strings
from vlm_jax.evaluate.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    select_tokens,
    token_presence,
    top_k_mask,
    top_p_mask,
    warp_logits,
)
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir

MAX_NEW = 8
STOP = 2  # the tiny HF configs' eos_token_id
VOCAB = 50


def _logits_and_ids(seed=0, batch=4, n_ids=12):
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, VOCAB, generator=gen)
    ids = torch.randint(0, VOCAB, (batch, n_ids), generator=gen)
    return logits, ids


# ---- sampling vs transformers --------------------------------------------------------------------------------

@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_hf(penalty):
    logits, ids = _logits_and_ids()
    ref = lp.RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone()).numpy()
    presence = token_presence(jnp.asarray(ids.numpy()), jnp.ones(ids.shape, bool), VOCAB)
    ours = apply_repetition_penalty(jnp.asarray(logits.numpy()), presence, penalty)
    assert (ref != logits.numpy()).any()
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-6)


def test_presence_ignores_padding():
    tokens = jnp.asarray([[3, 5, 7], [7, 7, 1]])
    presence = token_presence(tokens, jnp.asarray([[True, False, True], [False, True, False]]), 9)
    np.testing.assert_array_equal(np.nonzero(np.asarray(presence)), [[0, 0, 1], [3, 7, 7]])


@pytest.mark.parametrize("k", [1, 5, 49])
def test_top_k_mask_matches_hf(k):
    logits, ids = _logits_and_ids(1)
    ref = lp.TopKLogitsWarper(k)(ids, logits.clone()).numpy()
    np.testing.assert_array_equal(np.asarray(top_k_mask(jnp.asarray(logits.numpy()), k)), np.isfinite(ref))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8, 0.99])
def test_top_p_mask_matches_hf(p):
    logits, ids = _logits_and_ids(2)
    ref = lp.TopPLogitsWarper(p)(ids, logits.clone()).numpy()
    mask = np.asarray(top_p_mask(jnp.asarray(logits.numpy()), p))
    np.testing.assert_array_equal(mask, np.isfinite(ref))
    assert 1 <= mask.sum(1).min() and mask.sum(1).max() < VOCAB


def test_warp_chain_matches_hf_processor_list():
    """HF's order: repetition penalty, temperature, top-k, top-p."""
    logits, ids = _logits_and_ids(3)
    cfg = SamplingConfig(temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.2)
    chain = lp.LogitsProcessorList([lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.7),
                                    lp.TopKLogitsWarper(20), lp.TopPLogitsWarper(0.9)])
    ref = chain(ids, logits.clone()).numpy()
    presence = token_presence(jnp.asarray(ids.numpy()), jnp.ones(ids.shape, bool), VOCAB)
    ours = np.asarray(warp_logits(jnp.asarray(logits.numpy()), presence, cfg))
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref))
    np.testing.assert_allclose(ours[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-6)
    greedy = SamplingConfig(repetition_penalty=1.2)
    ref_greedy = lp.RepetitionPenaltyLogitsProcessor(1.2)(ids, logits.clone()).argmax(-1).numpy()
    np.testing.assert_array_equal(select_tokens(jnp.asarray(logits.numpy()), presence, greedy, None), ref_greedy)


def test_seeded_sampling_is_reproducible_and_stays_in_the_support():
    logits, _ = _logits_and_ids(4, batch=2000)
    logits = jnp.asarray(logits.numpy())
    cfg = SamplingConfig(temperature=1.0, top_k=3)
    a = select_tokens(logits, None, cfg, jax.random.key(7))
    np.testing.assert_array_equal(a, select_tokens(logits, None, cfg, jax.random.key(7)))
    assert (np.asarray(a) != np.asarray(select_tokens(logits, None, cfg, jax.random.key(8)))).any()
    assert np.take_along_axis(np.asarray(top_k_mask(logits, 3)), np.asarray(a)[:, None], 1).all()


def test_sampling_config_rejects_bad_values():
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(repetition_penalty=0.0), dict(top_k=5)):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


# ---- host-side helpers ---------------------------------------------------------------------------------------

def test_left_align_moves_valid_prefix_to_the_right():
    rows = [[5, 6, 7], [8], [4, 3, 2, 9, 1]]
    ids, mask = hb.pad_right([np.asarray(r) for r in rows], 6)
    batch = {"tokens": ids.astype(np.int32), "valid": mask, "image_slots": ids == 6, "pixels": np.ones((3, 2))}
    out = left_align(batch)
    for i, r in enumerate(rows):
        pad = 6 - len(r)
        np.testing.assert_array_equal(out["tokens"][i], [hb.PAD_TOK] * pad + r)
        np.testing.assert_array_equal(out["valid"][i], [False] * pad + [True] * len(r))
        np.testing.assert_array_equal(out["image_slots"][i], [False] * pad + [t == 6 for t in r])
    assert out["pixels"] is batch["pixels"]
    np.testing.assert_array_equal(left_align(out)["tokens"], out["tokens"])  # already aligned: unchanged


def test_stop_strings_and_decoding():
    assert truncate_at_stop_strings("a cat.\nUSER: and", ["USER:", "\n"]) == "a cat."
    assert truncate_at_stop_strings("no stop", ["###"]) == "no stop"

    class Chars:
        def decode(self, ids):
            return "".join(chr(ord("a") + i) for i in ids)

    assert decode_generated(Chars(), np.array([0, 1, 2, 9, 9]), 3, True) == "ab"
    assert decode_generated(Chars(), np.array([0, 1, 2, 3]), 4, False, ["c"]) == "ab"


# ---- greedy parity with HF generate ---------------------------------------------------------------------------

def _hf_generate(hf, ids, **inputs):
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor(ids[None]), do_sample=False, max_new_tokens=MAX_NEW,
                          eos_token_id=STOP, pad_token_id=hb.PAD_TOK, **inputs)
    return out[0, len(ids):].numpy()


def _llava(tmp):
    hf = hb.build_llava(seed=0)
    rng = np.random.default_rng(1)
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rows = [hb.prompt(64, 9, rng), hb.prompt(64, 4, rng)]
    ids, mask = hb.pad_right(rows, 80)
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=1)
    return hf, rows, [dict(pixel_values=px[:1]), dict(pixel_values=px[1:])], batch, {}


def _llava_next(tmp):
    hf = hb.build_llava_next(seed=3)  # a seed whose greedy answers vary
    rng = np.random.default_rng(2)
    rows, hf_inputs, views, grids, sizes = [], [], [], [], [(30, 64), (50, 50)]
    for size in sizes:
        grid = tuple(int(g) for g in get_anyres_image_grid_shape(size, hb.PINPOINTS, 32))
        px = torch.randn(1, 1 + grid[0] * grid[1], 3, 32, 32, generator=torch.Generator().manual_seed(sum(size)))
        inputs = dict(pixel_values=px, image_sizes=torch.tensor([size]))
        with torch.no_grad():
            n = int(np.prod(hf.model.get_image_features(**inputs).pooler_output[0].shape[:-1]))
        rows.append(hb.prompt(n, int(rng.integers(3, 10)), rng)), hf_inputs.append(inputs)
        views.append(px[0].numpy()), grids.append(grid)
    ids, mask = hb.pad_right(rows, max(map(len, rows)) + 3)
    batch = hb.our_batch(ids, mask, views, max_views=5, grids=grids, orig_sizes=sizes)
    return hf, rows, hf_inputs, batch, {}


def _internvl(tmp):
    hf = hb.build_internvl(seed=0)
    rng = np.random.default_rng(3)
    px = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    rows = [hb.prompt(16, 11, rng), hb.prompt(48, 5, rng)]  # one tile; 1x2 tiles + thumbnail
    ids, mask = hb.pad_right(rows, 72)
    batch = hb.our_batch(ids, mask, [px[:1].numpy(), px[1:].numpy()], max_views=4, grids=[(1, 1), (1, 2)])
    return hf, rows, [dict(pixel_values=px[:1]), dict(pixel_values=px[1:])], batch, dict(max_views=4)


FAMILIES = {"llava": _llava, "llava_next": _llava_next, "internvl": _internvl}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    out = {}
    for name, build in FAMILIES.items():
        path = tmp_path_factory.mktemp(name)
        hf, rows, hf_inputs, batch, overrides = build(path)
        hf.save_pretrained(path)
        out[name] = dict(hf=hf, rows=rows, hf_inputs=hf_inputs, batch=batch,
                         model=load_vlm_from_hf_dir(str(path), **overrides))
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_tokens_equal_hf_generate(families, family):
    case = families[family]
    out = generate(case["model"], case["batch"], max_new_tokens=MAX_NEW, stop_ids=[STOP], pad_id=hb.PAD_TOK)
    assert out.tokens.shape == (2, MAX_NEW) and out.tokens.dtype == jnp.int32
    refs = [_hf_generate(case["hf"], row, **inputs) for row, inputs in zip(case["rows"], case["hf_inputs"])]
    assert all(len(r) == MAX_NEW for r in refs) and len({t for r in refs for t in r.tolist()}) >= 3, \
        "the references must run all 8 tokens and not be one repeated token"
    np.testing.assert_array_equal(np.asarray(out.tokens), np.stack(refs))
    np.testing.assert_array_equal(out.lengths, [MAX_NEW, MAX_NEW])
    assert not out.finished.any()


def test_rows_stop_independently_like_hf(families):
    """Greedy with a repetition penalty (varied answers) equals HF; stop on a token row 0 emits mid-way and
    row 1 never does: row 0 pads after it, row 1 runs all 8 tokens."""
    case = families["llava"]
    free = [_hf_generate(case["hf"], r, **x, repetition_penalty=1.5) for r, x in zip(case["rows"], case["hf_inputs"])]
    stop = next(int(t) for t in free[0][2:] if t not in free[1] and t not in free[0][:2])
    out = generate(case["model"], case["batch"], max_new_tokens=MAX_NEW, stop_ids=[stop], pad_id=hb.PAD_TOK,
                   sampling=SamplingConfig(repetition_penalty=1.5))
    for i, (row, inputs) in enumerate(zip(case["rows"], case["hf_inputs"])):
        with torch.no_grad():
            ref = case["hf"].generate(input_ids=torch.tensor(row[None]), do_sample=False, max_new_tokens=MAX_NEW,
                                      eos_token_id=stop, pad_token_id=hb.PAD_TOK, repetition_penalty=1.5,
                                      **inputs)[0, len(row):].numpy()
        np.testing.assert_array_equal(np.asarray(out.tokens[i, :len(ref)]), ref)
        assert int(out.lengths[i]) == len(ref)
    np.testing.assert_array_equal(out.finished, [True, False])
    assert 3 <= int(out.lengths[0]) < MAX_NEW and (np.asarray(out.tokens[0, int(out.lengths[0]):]) == 0).all()


def test_one_compile_per_batch_shape_and_length(families):
    case = families["internvl"]
    graphdef, state = nnx.split(case["model"])
    fn = make_generate_fn(graphdef, stop_ids=[STOP], pad_id=hb.PAD_TOK)
    batch = left_align(case["batch"])
    first = fn(state, batch, jax.random.key(0), max_new_tokens=MAX_NEW)  # compiled here or by the parity test
    compiled = fn._cache_size()
    again = fn(state, batch, jax.random.key(1), max_new_tokens=MAX_NEW)
    assert fn._cache_size() == compiled, "a repeated call must reuse the compiled function"
    np.testing.assert_array_equal(first.tokens, again.tokens)
    shorter = fn(state, batch, jax.random.key(0), max_new_tokens=3)
    assert fn._cache_size() == compiled + 1, "a new max_new_tokens compiles exactly once"
    np.testing.assert_array_equal(shorter.tokens, first.tokens[:, :3])


def test_sharded_generation_equals_single_device(families):
    case = families["llava"]
    ref = generate(case["model"], case["batch"], max_new_tokens=MAX_NEW, stop_ids=[STOP], pad_id=hb.PAD_TOK)
    with sharding.use_mesh(sharding.make_mesh(data=2, devices=jax.devices()[:2])):
        out = generate(case["model"], case["batch"], max_new_tokens=MAX_NEW, stop_ids=[STOP], pad_id=hb.PAD_TOK)
    np.testing.assert_array_equal(out.tokens, ref.tokens)


def test_sampling_in_the_loop_is_seeded(families):
    case = families["llava"]
    cfg = SamplingConfig(temperature=1.5, top_k=40)
    run = lambda seed: generate(case["model"], case["batch"], max_new_tokens=MAX_NEW, stop_ids=[STOP],
                                pad_id=hb.PAD_TOK, sampling=cfg, rng=jax.random.key(seed))
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()
    with pytest.raises(ValueError, match="rng"):
        generate(case["model"], case["batch"], max_new_tokens=2, stop_ids=[STOP], sampling=cfg)
