"""LMConfig validation and the real-size presets (parameter counts published with the models)."""

import math

import jax
import pytest
from flax import nnx

from vlm_jax.lm import config as lm_config
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.nn.rope import RopeScaling

TINY = dict(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)


def num_params(cfg: LMConfig) -> int:
    state = nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize("preset, count", [
    (lm_config.vicuna_7b, 6_738_415_616),   # Llama-2-7B
    (lm_config.llama3_8b, 8_030_261_248),   # Meta-Llama-3-8B
    (lm_config.qwen2_0_5b, 494_032_768),    # Qwen2-0.5B (tied embeddings, q/k/v biases)
])
def test_presets_have_the_published_parameter_counts(preset, count):
    assert num_params(preset()) == count


def test_internlm2_preset_is_the_internvl2_2b_llm():
    cfg = lm_config.internlm2_1_8b()
    assert (cfg.num_heads // cfg.num_kv_heads, cfg.tie_embeddings, cfg.qkv_bias) == (2, False, False)
    assert cfg.rope_scaling == RopeScaling("dynamic", 2.0, original_max_len=cfg.max_seq_len)
    assert 1.8e9 < num_params(cfg) < 1.95e9


def test_from_dict_and_validation():
    cfg = LMConfig.from_dict(dict(TINY, rope_scaling=dict(kind="linear", factor=2.0), remat="full"))
    assert cfg.rope_scaling == RopeScaling("linear", 2.0) and cfg.remat == "full"
    assert hash(cfg) == hash(LMConfig.from_dict(dict(TINY, rope_scaling=dict(kind="linear", factor=2.0),
                                                     remat="full")))
    with pytest.raises(ValueError, match="precision policy"):  # dtypes are not a tower setting
        LMConfig.from_dict(dict(TINY, dtype="bfloat16"))
    with pytest.raises(ValueError, match="unknown LMConfig keys.*hidden"):
        LMConfig.from_dict(dict(TINY, hidden=32))
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        LMConfig(**dict(TINY, num_kv_heads=3))
    with pytest.raises(ValueError, match="remat"):
        LMConfig(**TINY, remat="everything")
    with pytest.raises(ValueError, match="attention_impl"):
        LMConfig(**TINY, attention_impl="flash")
    with pytest.raises(TypeError, match="RopeScaling"):
        LMConfig(**TINY, rope_scaling={"kind": "linear", "factor": 2.0})
