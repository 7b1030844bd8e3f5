r"""The embedded default: a tiny ViT + tiny decoder trained from scratch on generated EntityGrid-QA with
InternVL-style tiling (2x2 tiles + thumbnail), on CPU, in a few minutes.

    vlm-jax train --config=configs/tiny_entitygrid.py --workdir=/tmp/vlm_jax_tiny

Sweepable argument: ``:steps=N`` (e.g. ``configs/tiny_entitygrid.py:steps=50`` for a smoke run).
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps",))
    steps = int(args.get("steps", 1500))
    canvas, tile = 64, 32  # S = 2 t: the 2x2 cut lines cross the image centre (spec/methods.md §4.3)

    model = dict(
        vision=presets.tiny_vision("internvit", image_size=tile, patch=8, hidden=64, layers=3),
        llm=dict(presets.tiny_llm(vocab_size=512, hidden=128, layers=3), num_heads=4, num_kv_heads=2, head_dim=32),
        projector=dict(kind="internvl", downsample=0.5),
        select_layer=-1, layout="flat", max_views=5, image_token_id=4,
    )
    # the embedded tokenizer: the default vocabulary trained from the generator's texts (cached in the workdir)
    data = blocks.entitygrid_data(dict(kind="internvl", min_tiles=1, max_tiles=4, thumbnail=True, norm="imagenet"),
                                  canvas=canvas, batch_size=32, seq_buckets=(128, 160))
    recipe = [dict(name="scratch", steps=steps, train=[".*"], lr=2e-3, warmup=0.05)]
    train = blocks.train_block(recipe, z_loss=1e-4, weight_decay=0.01, log_every=50)
    return blocks.make_config(model=model, data=data, train=train, mesh=dict(data=-1, fsdp=1, tensor=1))
