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
#   -> llava-hf/llava-1.5-7b-hf: 7,062,902,784 (card: "7.06B params")
#   -> llava-hf/llava-v1.6-vicuna-7b-hf adds image_newline (4,096): 7,062,906,880 (card: "7.06B params")
#   InternVL2-2B (OpenGVLab/InternVL2-2B card: "2.21B"): InternViT-300M-448px 304,012,288 +
#   mlp1 12,595,200 (spec/methods.md §2.1: "≈ 12.60M") + internlm2-chat-1_8b with vocab 92,553: 1,889,146,880
#   -> 2,205,754,368
PUBLISHED = {
    "llava_15_7b": 7_062_902_784,
    "llava_next_7b": 7_062_906_880,
    "internvl2_2b": 2_205_754_368,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_count(name):
    cfg = VLMConfig.from_dict(getattr(presets, name)())
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == PUBLISHED[name]


def test_typo_in_model_config_fails_at_load():
    bad = presets.llava_15_7b()
    bad["selct_layer"] = -2
    with pytest.raises(ValueError, match="selct_layer"):
        VLMConfig.from_dict(bad)
    bad = presets.llava_15_7b()
    bad["llm"] = dict(bad["llm"], hiden_size=1)
    with pytest.raises(ValueError, match="hiden_size"):
        VLMConfig.from_dict(bad)
