"""RoPE frequencies and rotation against transformers' ``modeling_rope_utils`` and Llama's ``apply_rotary_pos_emb``."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers as T
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from vlm_jax.nn.rope import RopeScaling, apply_rope, inverse_frequencies, rope_tables

HEAD_DIM = 16

SCALINGS = {
    "linear": (dict(rope_type="linear", factor=4.0), RopeScaling("linear", 4.0)),
    "llama3": (dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=64), RopeScaling("llama3", 8.0, 64, 1.0, 4.0)),
    "dynamic": (dict(rope_type="dynamic", factor=2.0), RopeScaling("dynamic", 2.0, 32)),
}


def hf_config(rope: dict | None, theta: float = 5000.0) -> T.LlamaConfig:
    params = dict(rope or {"rope_type": "default"}, rope_theta=theta)
    return T.LlamaConfig(hidden_size=4 * HEAD_DIM, num_attention_heads=4, max_position_embeddings=32,
                         rope_parameters=params)


@pytest.mark.parametrize("name", ["default", *SCALINGS])
@pytest.mark.parametrize("seq_len", [20, 100])
def test_inverse_frequencies_match_transformers(name, seq_len):
    hf_rope, ours = SCALINGS.get(name, (None, None))
    config = hf_config(hf_rope)
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        ref = 1.0 / 5000.0 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)
    else:
        ref, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)
        assert attention_factor == 1.0
    got = inverse_frequencies(HEAD_DIM, 5000.0, ours, seq_len=seq_len)
    np.testing.assert_allclose(np.asarray(got), ref.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["default", *SCALINGS])
def test_rotation_matches_transformers(name):
    hf_rope, ours = SCALINGS.get(name, (None, None))
    rotary = T.models.llama.modeling_llama.LlamaRotaryEmbedding(hf_config(hf_rope))
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 40, HEAD_DIM)).astype(np.float32)
    k = rng.normal(size=(2, 1, 40, HEAD_DIM)).astype(np.float32)
    positions = np.stack([np.arange(40), np.arange(40) + 7])  # beyond 32: dynamic NTK rescales
    cos_t, sin_t = rotary(torch.tensor(q), torch.tensor(positions))
    q_ref, k_ref = apply_rotary_pos_emb(torch.tensor(q), torch.tensor(k), cos_t, sin_t)

    cos, sin = rope_tables(jnp.asarray(positions, jnp.int32), HEAD_DIM, 5000.0, ours)
    np.testing.assert_allclose(np.asarray(cos), cos_t.numpy(), atol=2e-6)
    to_ours = lambda x: jnp.asarray(x.transpose(0, 2, 1, 3))  # [B, H, L, Dh] -> [B, L, H, Dh]
    np.testing.assert_allclose(np.asarray(apply_rope(to_ours(q), cos, sin)), to_ours(q_ref.numpy()), atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply_rope(to_ours(k), cos, sin)), to_ours(k_ref.numpy()), atol=1e-5)


def test_bad_scalings_raise():
    with pytest.raises(ValueError, match="unknown rope scaling"):
        RopeScaling("yarn", 2.0, 64)
    with pytest.raises(ValueError, match="original_max_len"):
        RopeScaling("llama3", 8.0)
    with pytest.raises(ValueError, match="even head_dim"):
        inverse_frequencies(7, 1e4)
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        rope_tables(jnp.arange(4), HEAD_DIM, 1e4)
