"""Starting a paper model from a separate vision directory and LLM directory (``init_towers``), and from a combined
LLaVA directory whose projector the model must not take silently (``load_base_weights``).

References are transformers models we did not write: a tiny perturbed ``CLIPModel`` (dual encoder, as
``openai/clip-vit-large-patch14-336`` ships) and ``LlamaForCausalLM`` saved with ``save_pretrained``. After
``init_towers`` our vision tower's selected hidden states and our LLM's logits match transformers' (float32,
max |Δ| ≤ 1e-5 · max |ref|), and every other parameter (projector, the papers' modules) is exactly its
initialisation.
"""

import hf_builders as hb
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers as T
from flax import nnx
from test_stage_combinations import tiny_config

from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.hf_vlm import load_base_weights
from vlm_jax.interop.tower_init import init_towers
from vlm_jax.model import VLM
from vlm_jax.nn.attention import causal_mask

REL_TOL = 1e-5
# the towers of tests/test_stage_combinations.tiny_config (presets.tiny_vision("clip"), presets.tiny_llm())
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5)
CLIP_TEXT = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=16)
LLAMA = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6, max_position_embeddings=4096,
             tie_word_embeddings=False)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(3)
    clip = hb.perturb(T.CLIPModel(T.CLIPConfig(vision_config=CLIP, text_config=CLIP_TEXT, projection_dim=8)), seed=3)
    clip.save_pretrained(root / "clip")
    llama = hb.perturb(T.LlamaForCausalLM(T.LlamaConfig(**LLAMA)), seed=4)
    llama.save_pretrained(root / "llama")
    llava = hb.perturb(T.LlavaForConditionalGeneration(T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**CLIP), text_config=T.LlamaConfig(**LLAMA), image_token_index=100,
        vision_feature_layer=-2)), seed=5)
    llava.save_pretrained(root / "llava")
    return dict(clip=clip, llama=llama, llava=llava, vision_dir=str(root / "clip"), llm_dir=str(root / "llama"),
                llava_dir=str(root / "llava"))


def _params(module) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _close(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert scale > 0.5, "reference too small for a meaningful relative check"
    assert err <= REL_TOL * scale, f"max |Δ| {err:.3g} > {REL_TOL} · {scale:.3g}"


@pytest.mark.parametrize("stage", ["dem", "slime", "self_mining"])
def test_towers_match_transformers_and_the_rest_keeps_its_initialisation(stage, dirs):
    cfg = tiny_config([stage])
    model = VLM(cfg, rngs=nnx.Rngs(0))
    before = _params(model)
    assert init_towers(model, vision_dir=dirs["vision_dir"], llm_dir=dirs["llm_dir"]) == ["vision_tower",
                                                                                            "language_model"]
    px = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = dirs["clip"].vision_model(pixel_values=px, output_hidden_states=True).hidden_states[cfg.select_layer]
    _close(model.vision(jnp.asarray(px.numpy().transpose(0, 2, 3, 1)), select_layer=cfg.select_layer).patches,
           ref[:, 1:].numpy())

    tokens = np.random.default_rng(0).integers(0, LLAMA["vocab_size"], (2, 7))
    with torch.no_grad():
        ref_logits = dirs["llama"](input_ids=torch.tensor(tokens)).logits.numpy()
    valid = jnp.ones(tokens.shape, bool)
    hidden, _ = model.llm(model.llm.embed(jnp.asarray(tokens)), positions=jnp.broadcast_to(jnp.arange(7), (2, 7)),
                          mask=causal_mask(valid))
    _close(model.llm.logits(hidden), ref_logits)

    after = _params(model)
    rest = [p for p in before if not p.startswith(("vision/", "llm/"))]
    assert rest, "the model has no parameters besides its towers"
    for path in rest:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    changed = [p for p in before if p.startswith(("vision/", "llm/")) and not np.array_equal(after[p], before[p])]
    assert len(changed) == len([p for p in before if p.startswith(("vision/", "llm/"))])


def test_directories_that_do_not_describe_the_model_are_refused(dirs, tmp_path):
    model = VLM(tiny_config(["dem"]), rngs=nnx.Rngs(0))
    other = T.LlamaForCausalLM(T.LlamaConfig(**dict(LLAMA, rms_norm_eps=1e-5)))
    other.save_pretrained(tmp_path / "eps")
    with pytest.raises(CheckpointError, match="norm_eps: model 1e-06 vs checkpoint 1e-05"):
        init_towers(model, llm_dir=str(tmp_path / "eps"))
    padded = VLM(tiny_config(["dem"]).with_options({"llm.vocab_size": 129}), rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError, match="vocab_size: model 129 vs checkpoint 128"):
        init_towers(padded, llm_dir=dirs["llm_dir"])
    with pytest.raises(ValueError, match="load_base_weights"):
        init_towers(model, vision_dir=dirs["llava_dir"])
    with pytest.raises(ValueError, match="vision_dir, an llm_dir"):
        init_towers(model)


def test_a_combined_llava_directory_brings_its_projector_only_on_request(dirs):
    hf_projector = dirs["llava"].model.multi_modal_projector.linear_1.weight.detach().numpy().T
    model = VLM(tiny_config(["dem"]), rngs=nnx.Rngs(0))
    initial = np.asarray(model.projector.linear_1.kernel[...])
    with pytest.raises(ValueError, match=r"stage\(s\) \['dem'\].*projector=False"):
        load_base_weights(model, dirs["llava_dir"])
    assert load_base_weights(model, dirs["llava_dir"], projector=False) == ["vision_tower", "language_model"]
    np.testing.assert_array_equal(model.projector.linear_1.kernel[...], initial)
    llava_lm_head = dirs["llava"].lm_head.weight.detach().numpy().T
    np.testing.assert_array_equal(model.llm.lm_head.kernel[...], llava_lm_head)
    load_base_weights(model, dirs["llava_dir"], projector=True)
    np.testing.assert_array_equal(model.projector.linear_1.kernel[...], hf_projector)
    slime = VLM(tiny_config(["slime"]), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\['slime'\]"):
        load_base_weights(slime, dirs["llava_dir"])
