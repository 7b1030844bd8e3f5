r"""The embedded default: a tiny ViT + tiny decoder trained from scratch on generated EntityGrid-QA with
InternVL-style tiling (2x2 tiles + thumbnail), on CPU, in a few minutes.

    vlm-jax train --config=configs/tiny_entitygrid.py --workdir=/tmp/vlm_jax_tiny

Sweepable argument: ``:steps=N`` (e.g. ``configs/tiny_entitygrid.py:steps=50`` for a smoke run).
"""

import ml_collections

from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = dict(a.split("=", 1) for a in arg.split(",")) if arg else {}
    steps = int(args.get("steps", 1500))
    c = ml_collections.ConfigDict()
    canvas, tile = 64, 32  # S = 2 t: the 2x2 cut lines cross the image centre (spec/methods.md §4.3)

    c.model = dict(
        vision=presets.tiny_vision("internvit", image_size=tile, patch=8, hidden=64, layers=3),
        llm=dict(presets.tiny_llm(vocab_size=512, hidden=128, layers=3), num_heads=4, num_kv_heads=2, head_dim=32),
        projector=dict(kind="internvl", downsample=0.5),
        select_layer=-1, layout="flat", max_views=5, image_token_id=4,
    )
    c.data = dict(
        source=dict(kind="entitygrid", version=2, split="train", size=200_000, seed=0, canvas=canvas),
        # 3,240 = 6 full balance periods (vlm_jax/data/entitygrid.py): 1,080 questions per task, 540 per edge flag
        eval_source=dict(kind="entitygrid", version=2, split="test", size=3240, seed=0, canvas=canvas),
        tiling=dict(kind="internvl", min_tiles=1, max_tiles=4, thumbnail=True, norm="imagenet"),
        tokenizer="",  # empty: the default vocabulary trained from the generator's texts (cached in the workdir)
        template="chatml",
        batch_size=32,
        seq_buckets=(128, 160),
        worker_count=0,
    )
    c.train = dict(
        seed=0,
        recipe=[dict(name="scratch", steps=steps, train=[".*"], lr=2e-3, warmup=0.05)],
        z_loss=1e-4, grad_clip=1.0, weight_decay=0.01, accum=1,
        log_every=50, ckpt_every=500, keep=2, keep_every=None,
        max_replicated=None,  # fail at start-up if more than this fraction of parameter bytes is replicated
        allow_data_change=False,  # resume even if the data config differs from the checkpoint's
        stop_at=None,  # end this run after step N (time-sliced / preemptible jobs); the next run resumes
        peak_flops=None,  # per-device peak FLOP/s for the MFU metric
    )
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    return c
