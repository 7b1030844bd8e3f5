"""Logit / hidden-state parity of the decoder with transformers' Llama and Qwen2 (spec/parity.md §1.2).

Tiny random HF models are saved with ``save_pretrained`` and loaded by ``vlm_jax.interop.hf_lm``;
the batch is right-padded and HF gets the attention mask; only valid positions are compared.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers as T
from flax import nnx

from vlm_jax.interop.checkpoint_io import CheckpointError, TensorSource
from vlm_jax.interop.hf_lm import lm_config_from_hf, load_decoder, load_decoder_from_hf_dir
from vlm_jax.lm.decoder import Decoder
from vlm_jax.nn.attention import causal_mask
from vlm_jax.nn.rope import RopeScaling

TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
            initializer_range=0.2)  # larger than HF's 0.02 so that logits are O(1) and errors show

CASES = {
    "llama": (T.LlamaConfig, dict(TINY)),
    "llama_gqa_llama3_rope": (T.LlamaConfig, dict(
        TINY, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    "llama_linear_rope_tied": (T.LlamaConfig, dict(
        TINY, tie_word_embeddings=True, rope_scaling=dict(rope_type="linear", factor=4.0))),
    "qwen2": (T.Qwen2Config, dict(TINY, rms_norm_eps=1e-5)),
    "qwen2_tied": (T.Qwen2Config, dict(TINY, tie_word_embeddings=True, rope_theta=1e6)),
}

LENGTHS = np.array([9, 5, 1])  # valid tokens per row of a right-padded [3, 9] batch


def build_hf(name: str, path) -> torch.nn.Module:
    config_cls, kwargs = CASES[name]
    torch.manual_seed(0)
    model = getattr(T, config_cls.__name__.replace("Config", "ForCausalLM"))(config_cls(**kwargs)).eval()
    with torch.no_grad():  # the default init leaves RMSNorm scales at 1 and biases at 0: randomise them
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


def batch():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 128, (3, 9))
    valid = np.arange(9)[None] < LENGTHS[:, None]
    return tokens, valid


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_and_hidden_match_transformers(name, tmp_path):
    model = build_hf(name, tmp_path)
    tokens, valid = batch()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(valid.astype(np.int64)),
                    output_hidden_states=True)
    hf_logits, hf_hidden = out.logits.numpy(), out.hidden_states[-1].numpy()

    decoder = load_decoder_from_hf_dir(str(tmp_path))
    assert decoder.cfg.tie_embeddings == bool(model.config.tie_word_embeddings)
    assert (decoder.lm_head is None) == decoder.cfg.tie_embeddings
    positions = jnp.broadcast_to(jnp.arange(9, dtype=jnp.int32), (3, 9))
    hidden, cache = decoder(decoder.embed(jnp.asarray(tokens)), positions=positions,
                            mask=causal_mask(jnp.asarray(valid)))
    logits = decoder.logits(hidden)
    assert cache is None and logits.dtype == jnp.float32 and logits.shape == (3, 9, 128)
    assert_close(hidden, hf_hidden, valid, rel=1e-4)
    assert_close(logits, hf_logits, valid, rel=1e-4)


def assert_close(ours, ref, valid, rel):
    """Max abs difference over the valid positions within ``rel`` x the reference's largest magnitude."""
    ours, ref = np.asarray(ours)[valid], np.asarray(ref)[valid]
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} x {scale:.3g}"


def test_config_from_hf_dicts():
    llama3 = lm_config_from_hf(T.LlamaConfig(**CASES["llama_gqa_llama3_rope"][1]).to_dict())
    assert llama3.rope_scaling == RopeScaling("llama3", 8.0, 16, 1.0, 4.0) and llama3.rope_theta == 500000.0
    assert (llama3.num_heads, llama3.num_kv_heads, llama3.head_dim, llama3.qkv_bias) == (4, 2, 8, False)
    qwen = lm_config_from_hf(T.Qwen2Config(**CASES["qwen2_tied"][1]).to_dict())
    assert qwen.qkv_bias and qwen.tie_embeddings and qwen.rope_theta == 1e6 and qwen.rope_scaling is None
    # transformers 4 style keys (hub checkpoints): rope_theta + rope_scaling with "type".
    v4 = dict(T.LlamaConfig(**TINY).to_dict(), rope_parameters=None, rope_theta=1e4,
              rope_scaling={"type": "dynamic", "factor": 2.0})
    assert lm_config_from_hf(v4).rope_scaling == RopeScaling("dynamic", 2.0, 256)
    with pytest.raises(ValueError, match="model_type"):
        lm_config_from_hf(dict(TINY, model_type="gpt2"))
    with pytest.raises(ValueError, match="attention_bias"):
        lm_config_from_hf(dict(T.LlamaConfig(**TINY).to_dict(), attention_bias=True))
    with pytest.raises(ValueError, match="rope scaling type"):
        lm_config_from_hf(dict(T.LlamaConfig(**TINY).to_dict(), rope_parameters={"rope_type": "yarn", "factor": 2.0}))


def test_checkpoint_mismatches_fail_loudly(tmp_path):
    build_hf("qwen2", tmp_path / "qwen2")
    build_hf("llama", tmp_path / "llama")
    qwen_decoder = load_decoder_from_hf_dir(str(tmp_path / "qwen2"))
    with pytest.raises(CheckpointError, match="missing tensor.*bias"):
        load_decoder(qwen_decoder, TensorSource.open(str(tmp_path / "llama")))
    no_bias = Decoder(qwen_decoder.cfg.replace(qkv_bias=False), rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_decoder(no_bias, TensorSource.open(str(tmp_path / "qwen2")))
    wide = Decoder(qwen_decoder.cfg.replace(mlp_dim=96), rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError, match="shape"):
        load_decoder(wide, TensorSource.open(str(tmp_path / "qwen2")))
