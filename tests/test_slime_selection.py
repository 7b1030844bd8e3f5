"""SliME text-guided selection (spec/methods.md §6.4, §6.7): scores against torch, top-p and compaction
against dynamic-shape NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vlm_jax.hires.slime import compact, selection_scores, top_p_keep


def random_inputs(seed: int, b: int = 3, v: int = 12, l: int = 7, d: int = 16):
    rng = np.random.default_rng(seed)
    visual = rng.normal(size=(b, v, d)).astype(np.float32)
    text = rng.normal(size=(b, l, d)).astype(np.float32)
    visual_valid = np.arange(v)[None] < rng.integers(1, v + 1, size=(b, 1))
    text_mask = rng.random((b, l)) < 0.7
    text_mask[:, 0] = True
    return visual, visual_valid, text, text_mask


def torch_router_probs(visual, visual_valid, text, text_mask, temperature):
    """The reference ``TextGuidedRouterCosine`` + softmax, per example on the valid visual tokens."""
    out = np.zeros(visual_valid.shape, np.float32)
    for b in range(visual.shape[0]):
        image = torch.from_numpy(visual[b][visual_valid[b]])
        sim = torch.nn.functional.cosine_similarity(image.unsqueeze(1), torch.from_numpy(text[b]).unsqueeze(0), dim=-1)
        sim = sim.masked_fill(torch.from_numpy(~text_mask[b]).unsqueeze(0), 0.0).sum(-1)
        out[b, visual_valid[b]] = torch.softmax(sim / temperature, dim=-1).numpy()
    return out


def numpy_top_p(probs: np.ndarray, gamma: float) -> np.ndarray:
    """Indices kept from ``probs [n]`` (valid tokens only): sort descending, cumulative sum, the tokens whose
    cumulative probability is <= gamma plus one more, back in ascending (spatial) order."""
    order = np.argsort(-probs, kind="stable")
    n_within = int((np.cumsum(probs[order], dtype=np.float32) <= gamma).sum())
    return np.sort(order[:n_within + 1]) if n_within < len(probs) else np.arange(len(probs))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_scores_match_torch_cosine_router(temperature):
    visual, vv, text, tm = random_inputs(0)
    got = selection_scores(jnp.asarray(visual), jnp.asarray(vv), jnp.asarray(text), jnp.asarray(tm),
                           temperature=temperature)
    np.testing.assert_allclose(np.asarray(got), torch_router_probs(visual, vv, text, tm, temperature),
                               rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(got)[~vv] == 0)


def test_mean_is_flatter_than_sum():
    visual, vv, text, tm = random_inputs(1, v=40, l=30)
    args = [jnp.asarray(a) for a in (visual, vv, text, tm)]
    p_sum, p_mean = selection_scores(*args, reduce="sum"), selection_scores(*args, reduce="mean")
    # sum = L_valid · mean inside the softmax: p_sum = softmax(L · log p_mean) over the valid tokens
    z = np.where(vv, tm.sum(-1, keepdims=True) * np.log(np.where(vv, np.asarray(p_mean, np.float64), 1)), -np.inf)
    expected = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(p_sum), expected / expected.sum(-1, keepdims=True), rtol=1e-4, atol=1e-9)

    def entropy(p):
        p = np.asarray(p)
        return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(-1)

    assert np.all(entropy(p_sum) < entropy(p_mean))
    kept_sum = np.asarray(top_p_keep(p_sum, args[1], 0.95)).sum(-1)
    kept_mean = np.asarray(top_p_keep(p_mean, args[1], 0.95)).sum(-1)
    assert np.all(kept_sum <= kept_mean) and np.any(kept_sum < kept_mean)


def test_noise_needs_rng_and_only_applies_when_asked():
    args = [jnp.asarray(a) for a in random_inputs(2)]
    with pytest.raises(ValueError, match="rng"):
        selection_scores(*args, noise_std=0.1)
    clean = np.asarray(selection_scores(*args, rng=jax.random.key(0)))
    noisy = np.asarray(selection_scores(*args, noise_std=0.1, rng=jax.random.key(0)))
    np.testing.assert_array_equal(noisy, np.asarray(selection_scores(*args, noise_std=0.1, rng=jax.random.key(0))))
    assert not np.allclose(clean, noisy)
    np.testing.assert_allclose(noisy.sum(-1), 1.0, rtol=1e-6)


def test_gamma_one_keeps_every_valid_token_in_order():
    rng = np.random.default_rng(3)
    probs = rng.random((5, 50)).astype(np.float32) ** 8  # many near-zero probabilities
    valid = rng.random((5, 50)) < 0.8
    probs = np.where(valid, probs, 0) / np.where(valid, probs, 0).sum(-1, keepdims=True)
    keep = top_p_keep(jnp.asarray(probs), jnp.asarray(valid), 1.0)
    np.testing.assert_array_equal(np.asarray(keep), valid)
    tokens = jnp.asarray(np.arange(5 * 50, dtype=np.float32).reshape(5, 50, 1))
    out, out_valid, n = compact(tokens, keep)
    for b in range(5):
        np.testing.assert_array_equal(np.asarray(out)[b, :n[b], 0], np.asarray(tokens)[b, valid[b], 0])
    np.testing.assert_array_equal(np.asarray(n), valid.sum(-1))


def test_top_p_matches_numpy_reference_on_random_cases():
    rng = np.random.default_rng(4)
    n_cases, v = 300, 24
    logits = rng.normal(size=(n_cases, v)) * rng.uniform(0.1, 6.0, size=(n_cases, 1))
    valid = rng.random((n_cases, v)) < rng.uniform(0.2, 1.0, size=(n_cases, 1))
    valid[:, 0] = True
    gammas = rng.uniform(0.05, 0.999, size=n_cases)
    e = np.where(valid, np.exp(logits - logits.max(-1, keepdims=True)), 0)
    probs = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    keep_fn = jax.jit(jax.vmap(lambda p, m, g: top_p_keep(p[None], m[None], g)[0]))
    keep = np.asarray(keep_fn(jnp.asarray(probs), jnp.asarray(valid), jnp.asarray(gammas, jnp.float32)))
    partial = 0
    for i in range(n_cases):
        idx = np.nonzero(valid[i])[0]
        expected = idx[numpy_top_p(probs[i, idx], np.float32(gammas[i]))]
        np.testing.assert_array_equal(np.nonzero(keep[i])[0], expected, err_msg=f"case {i}")
        partial += len(expected) < len(idx)
    assert not (keep & ~valid).any()
    assert partial > n_cases // 2  # the cases exercise real selection, not keep-all


def test_static_pipeline_equals_dynamic_numpy_boolean_indexing():
    visual, vv, text, tm = random_inputs(5, b=6, v=30, l=9)
    vv = np.random.default_rng(6).random(vv.shape) < 0.75  # arbitrary (non-prefix) validity
    gamma = 0.6

    @jax.jit
    def static(visual, vv, text, tm):
        probs = selection_scores(visual, vv, text, tm, reduce="mean")
        return probs, compact(visual, top_p_keep(probs, vv, gamma))

    probs, (out, out_valid, n_kept) = static(*[jnp.asarray(a) for a in (visual, vv, text, tm)])
    probs, out, out_valid = np.asarray(probs), np.asarray(out), np.asarray(out_valid)
    for b in range(visual.shape[0]):
        tokens = visual[b][vv[b]]
        kept = tokens[numpy_top_p(probs[b][vv[b]], np.float32(gamma))]
        assert int(n_kept[b]) == len(kept)
        np.testing.assert_array_equal(out_valid[b], np.arange(visual.shape[1]) < len(kept))
        np.testing.assert_array_equal(out[b, :len(kept)], kept)
        assert not out[b, len(kept):].any()


def test_empty_rows_are_safe():
    visual, vv, text, tm = random_inputs(7)
    vv[1] = False
    probs = selection_scores(*[jnp.asarray(a) for a in (visual, vv, text, tm)])
    assert np.all(np.isfinite(np.asarray(probs))) and not np.asarray(probs)[1].any()
    keep = top_p_keep(probs, jnp.asarray(vv), 0.9)
    assert not np.asarray(keep)[1].any()
    assert int(compact(jnp.asarray(visual), keep)[2][1]) == 0
