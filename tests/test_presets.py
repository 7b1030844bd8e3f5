"""Real-size presets build abstractly and have the published parameter counts."""

import math

import jax
import pytest
from flax import nnx

from vlm_jax import presets
from vlm_jax.model import VLM, VLMConfig

# Published sizes and where they come from (HF model cards show the rounded total; the exact totals are the
# sums of the published component counts):
#   CLIP ViT-L/14-336 vision model (openai/clip-vit-large-patch14-336, incl. pre/post LayerNorm): 303,507,456
#   Llama-2-7B / Vicuna-7B v1.5 (meta-llama/Llama-2-7b-hf card: 6,738,415,616)
#   LLaVA mlp2x_gelu projector 1024->4096->4096: 4,198,400 + 16,781,312 = 20,979,712
#   llava-hf's text_config.vocab_size is 32064 (Vicuna's 32000 + <image> + <pad>, padded to 64): 64 more rows in
#   embed_tokens and lm_head than Llama-2-7B, 2 * 64 * 4096 = 524,288
#   -> llava-hf/llava-1.5-7b-hf: 7,063,427,072 (card: "7.06B params")
#   -> llava-hf/llava-v1.6-vicuna-7b-hf adds image_newline (4,096): 7,063,431,168 (card: "7.06B params")
#   InternVL2-2B (OpenGVLab/InternVL2-2B card: "2.21B"): InternViT-300M-448px 304,012,288 +
#   mlp1 12,595,200 (spec/methods.md §2.1: "≈ 12.60M") + internlm2-chat-1_8b with vocab 92,553: 1,889,146,880
#   -> 2,205,754,368
PUBLISHED = {
    "llava_15_7b": 7_063_427_072,
    "llava_next_7b": 7_063_431_168,
    "internvl2_2b": 2_205_754_368,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_count(name):
    cfg = VLMConfig.from_dict(getattr(presets, name)())
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == PUBLISHED[name]


# (llm.vocab_size, image_token_id) of the checkpoint each preset names: llava-hf config.json (vocab_size,
# image_token_index); InternVL2-2B's internlm2 config and its tokenizer's <IMG_CONTEXT>; the papers' Vicuna /
# Llama-3 starting points (32000 / 128256 rows, no image token) + the image token appended at the base size and
# padded to 64 rows, as transformers' resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64) gives.
VOCABULARIES = {
    "llava_15_7b": (32064, 32000), "llava_next_7b": (32064, 32000),
    "internvl2_2b": (92553, 92546), "sleighvl_2b": (92553, 92546),
    "hires_llava_7b": (32064, 32000), "slime_7b": (32064, 32000),
    "inf_llava_8b": (128320, 128256), "slime_8b": (128320, 128256),
}


@pytest.mark.parametrize("name", sorted(VOCABULARIES))
def test_preset_vocabulary_is_its_checkpoints(name):
    cfg = VLMConfig.from_dict(getattr(presets, name)())
    assert (cfg.llm.vocab_size, cfg.image_token_id) == VOCABULARIES[name]


@pytest.mark.parametrize("image_token_id", [32000, 40000, -1])
def test_image_token_outside_the_vocabulary_is_refused_at_load(image_token_id):
    """``jnp.take`` past the table gives NaN embeddings that spread through masked rows: refused at load."""
    bad = presets.llava_15_7b(llm=dict(presets.llava_15_7b()["llm"], vocab_size=32000), image_token_id=image_token_id)
    with pytest.raises(ValueError, match=rf"image_token_id={image_token_id} .*llm.vocab_size=32000"):
        VLMConfig.from_dict(bad)


def test_typo_in_model_config_fails_at_load():
    bad = presets.llava_15_7b()
    bad["selct_layer"] = -2
    with pytest.raises(ValueError, match="selct_layer"):
        VLMConfig.from_dict(bad)
    bad = presets.llava_15_7b()
    bad["llm"] = dict(bad["llm"], hiden_size=1)
    with pytest.raises(ValueError, match="hiden_size"):
        VLMConfig.from_dict(bad)
