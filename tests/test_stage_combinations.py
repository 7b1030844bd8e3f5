"""Every pair (and triple) of high-resolution stages on a tiny model: an accepted combination trains — every
stage's parameters get a non-zero gradient from the next-token loss — and a refused one raises when the
config is built, naming both stages (issue 9: "every combination either works or is refused")."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.tiny_models import random_batch
from vlm_jax import presets
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.stages import STAGES, StageConflict
from vlm_jax.train.loss import next_token_loss

TINY_STAGES = {
    "slice_restore": dict(layers=(0,), max_rows=3, max_cols=3, heads=2, down=2),
    "dem": dict(heads=2, ffn_ratio=4),
    "self_mining": dict(ratio=2, depth=1, heads=2),
    "gswa": dict(dim=16, layers=2, heads=2),
    "slime": dict(global_grid=4, local_grid=2),
}
ACCEPTED = {("slice_restore", "self_mining"), ("slice_restore", "gswa"), ("slice_restore", "slime"),
            ("self_mining", "gswa"), ("slice_restore", "self_mining", "gswa")}


def tiny_config(names) -> VLMConfig:
    """CLIP-style 32 px ViT (4x4 patch maps, CLS token), MLP projector, tiny Llama, and the given stages.

    The views are arranged as the stages need: global view first with a slice grid of up to 2x2 (5 views), or
    INF-LLaVA's dual crops (2·2² + 1 = 9 views, low-res view last) when DEM is among them.
    """
    dual = "dem" in names
    return VLMConfig.from_dict(dict(
        vision=presets.tiny_vision("clip"), llm=presets.tiny_llm(), projector=dict(kind="mlp2x_gelu"),
        max_views=9 if dual else 5, global_view="last" if dual else "first", image_token_id=100,
        **{name: TINY_STAGES[name] for name in names}))


def _combinations():
    names = list(STAGES)
    pairs = list(itertools.combinations(names, 2))
    return pairs + sorted(c for c in ACCEPTED if len(c) == 3)


@pytest.mark.parametrize("names", [c for c in _combinations() if c not in ACCEPTED], ids="+".join)
def test_refused_combination_names_both_stages(names):
    with pytest.raises(StageConflict) as err:
        tiny_config(names)
    message = str(err.value)
    assert sum(f"'{n}'" in message for n in names) >= 2, message


@pytest.mark.parametrize("names", sorted(ACCEPTED), ids="+".join)
def test_accepted_combination_trains_every_stage(names):
    cfg = tiny_config(names)
    model = VLM(cfg, rngs=nnx.Rngs(0))
    batch = {k: jnp.asarray(v) for k, v in random_batch(cfg, batch_size=4, seq_len=128).items()}
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(batch, train=True, rng=jax.random.key(1))
        return next_token_loss(logits, batch["tokens"], batch["loss_mask"])[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(float(value))
    for name in names:
        leaves = jax.tree.leaves(getattr(grads, name) if hasattr(grads, name) else grads[name])
        assert leaves, f"{name} has no parameters"
        norm = float(sum(jnp.sum(jnp.square(g)) for g in leaves))
        assert norm > 0, f"stage {name} gets no gradient in {names}"


def test_every_pair_is_decided():
    """The table of accepted combinations is complete: every pair not listed is refused (tested above)."""
    for names in _combinations():
        if names in ACCEPTED:
            tiny_config(names)


def test_gswa_without_a_thumbnail_is_refused():
    """GSWA's weights are attention from the thumbnail's CLS (SleighVL §3.2): with no whole-image view there is no
    query, so the config is refused instead of treating the last tile as the thumbnail."""
    with pytest.raises(StageConflict, match="thumbnail"):
        VLMConfig.from_dict(dict(vision=presets.tiny_vision("internvit"), llm=presets.tiny_llm(),
                                 projector=dict(kind="internvl"), select_layer=-1, max_views=4, global_view="none",
                                 image_token_id=100, gswa=TINY_STAGES["gswa"]))


@pytest.mark.parametrize("stage, where", [("self_mining", "last"), ("slime", "last"), ("dem", "first")])
def test_stage_refuses_a_global_view_it_cannot_read(stage, where):
    cfg = dict(vision=presets.tiny_vision("clip"), llm=presets.tiny_llm(), max_views=9 if stage == "dem" else 5,
               global_view=where, image_token_id=100, **{stage: TINY_STAGES[stage]})
    with pytest.raises(StageConflict, match=f"'{stage}'.*global_view"):
        VLMConfig.from_dict(cfg)
