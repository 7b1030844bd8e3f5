"""KV-cache decoding equals the full forward: padded prompts, prefix-LM groups, one compile for all steps.

The reference for each row is a plain forward of that row's real tokens alone (batch 1, no cache, no
padding before or inside the sequence), so padding and cache bookkeeping are checked against the
unpadded computation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.lm.kv_cache import init_cache, next_positions, prompt_positions
from vlm_jax.nn.attention import ar_mask, causal_mask

CFG = LMConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64,
               qkv_bias=True)
PROMPTS = [[5, 17, 3, 99, 42, 7], [11, 2, 64], [8]]
GENERATED = [[1, 2, 3, 4], [9, 8, 7, 6], [30, 31, 32, 33]]  # fed token by token (teacher forcing)


@pytest.fixture(scope="module")
def model():
    decoder = nnx.jit(lambda: Decoder(CFG, rngs=nnx.Rngs(0)))()  # one compile instead of many eager ops
    graphdef, state = nnx.split(decoder)
    traces = {}

    @jax.jit
    def step(state, cache, tokens, positions, mask_ar, valid):
        traces[tokens.shape] = traces.get(tokens.shape, 0) + 1
        m = nnx.merge(graphdef, state)
        hidden, cache = m(m.embed(tokens), positions=positions, mask=cache.extend_mask(mask_ar, valid), cache=cache)
        return m.logits(hidden), cache

    return decoder, state, step, traces


REF_LEN = 10  # references are right-padded to one length (one compile); causal attention ignores the tail


def reference_logits(decoder, tokens, mask_ar=None):
    """Logits of one sequence alone, no cache: ``[L, V]``."""
    n = len(tokens)
    t = jnp.asarray([list(tokens) + [0] * (REF_LEN - n)])
    mask_ar = jnp.asarray([list(mask_ar or [1] * n) + [1] * (REF_LEN - n)])
    return np.asarray(_forward(decoder, t, mask_ar, jnp.arange(REF_LEN)[None] < n))[0, :n]


@nnx.jit
def _forward(decoder, tokens, mask_ar, valid):
    hidden, _ = decoder(decoder.embed(tokens), positions=prompt_positions(valid), mask=ar_mask(mask_ar, valid))
    return decoder.logits(hidden)


def padded(prompts, side):
    width = max(map(len, prompts))
    tokens = np.zeros((len(prompts), width), np.int32)
    valid = np.zeros(tokens.shape, bool)
    for b, p in enumerate(prompts):
        cols = slice(width - len(p), width) if side == "left" else slice(0, len(p))
        tokens[b, cols], valid[b, cols] = p, True
    return tokens, valid


@pytest.mark.parametrize("side", ["left", "right"])
def test_prefill_and_extend_match_full_forward(model, side):
    decoder, state, step, traces = model
    tokens, valid = padded(PROMPTS, side)
    batch = len(PROMPTS)
    cache = init_cache(CFG, batch, capacity=12)
    ones = np.ones(tokens.shape, np.int32)
    logits, cache = step(state, cache, tokens, prompt_positions(jnp.asarray(valid)), ones, valid)
    outputs = [[] for _ in PROMPTS]
    for b in range(batch):
        outputs[b].append(np.asarray(logits)[b][valid[b]])
    for i in range(len(GENERATED[0])):
        new = np.array([[g[i]] for g in GENERATED], np.int32)
        positions = next_positions(cache)[:, None]
        logits, cache = step(state, cache, new, positions, np.ones((batch, 1), np.int32), np.ones((batch, 1), bool))
        for b in range(batch):
            outputs[b].append(np.asarray(logits)[b])
    assert traces[(batch, 1)] == 1, "the jitted extend step must compile once for all decode steps"

    for b in range(batch):
        ours = np.concatenate(outputs[b])
        ref = reference_logits(decoder, PROMPTS[b] + GENERATED[b])
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    expected_end = tokens.shape[1] + 4 if side == "left" else np.array([len(p) + 4 for p in PROMPTS])
    np.testing.assert_array_equal(cache.end, expected_end)
    np.testing.assert_array_equal(next_positions(cache), [len(p) + 4 for p in PROMPTS])


def test_prefix_lm_groups_survive_the_cache(model):
    """A bidirectional prefix (mask_ar = 0) prefilled, then causal tokens: same as one ar_mask forward."""
    decoder, state, step, _ = model
    prefix, suffix = [4, 9, 27, 1, 50], [6, 12, 70]
    mask_ar = [0] * len(prefix) + [1] * len(suffix)
    ref = reference_logits(decoder, prefix + suffix, mask_ar)
    assert np.abs(ref[0] - reference_logits(decoder, prefix + suffix)[0]).max() > 1e-3  # the prefix mask matters

    cache = init_cache(CFG, 1, capacity=10)
    prefix_arr = np.array([prefix], np.int32)
    logits, cache = step(state, cache, prefix_arr, np.arange(5)[None], np.zeros((1, 5), np.int32),
                         np.ones((1, 5), bool))
    ours = [np.asarray(logits)[0]]
    for tok in suffix:
        logits, cache = step(state, cache, np.array([[tok]], np.int32), next_positions(cache)[:, None],
                             np.ones((1, 1), np.int32), np.ones((1, 1), bool))
        ours.append(np.asarray(logits)[0])
    np.testing.assert_allclose(np.concatenate(ours), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_several_tokens_per_extend_and_capacity_overflow(model):
    decoder, state, step, _ = model
    seq = [3, 14, 15, 92, 65, 35, 89]
    cache = init_cache(CFG, 1, capacity=7)
    ours = []
    for chunk in (seq[:3], seq[3:6], seq[6:]):
        t = np.array([chunk], np.int32)
        pos = next_positions(cache)[:, None] + np.arange(len(chunk))[None]
        logits, cache = step(state, cache, t, pos, np.ones(t.shape, np.int32), np.ones(t.shape, bool))
        ours.append(np.asarray(logits)[0])
    ref = reference_logits(decoder, seq)
    np.testing.assert_allclose(np.concatenate(ours), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    full = cache
    _, cache = step(state, cache, np.array([[1, 2]], np.int32), np.array([[7, 8]]), np.ones((1, 2), np.int32),
                    np.ones((1, 2), bool))  # no room: dropped, the stored tokens stay intact
    np.testing.assert_array_equal(cache.k, full.k)
    assert int(cache.end[0]) == 7


def test_mask_that_ignores_the_cache_is_rejected(model):
    decoder = model[0]
    cache = init_cache(CFG, 1, capacity=8)
    x = decoder.embed(jnp.zeros((1, 2), jnp.int32))
    with pytest.raises(ValueError, match="extend_mask"):
        decoder(x, positions=jnp.zeros((1, 2), jnp.int32), mask=causal_mask(jnp.ones((1, 2), bool)), cache=cache)
