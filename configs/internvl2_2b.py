r"""InternVL2-2B (InternViT-300M-448 + pixel-shuffle MLP + InternLM2-chat-1.8B, ≤ 12 tiles + thumbnail),
fine-tuned with the InternVL2 2nd-finetune recipe (spec/methods.md §2.1: ViT frozen, MLP + LLM trained,
LR 4e-5, wd 0.01, warm-up 0.03, cosine, global batch 128, max length 4096, bf16 compute with float32
master weights, full remat). The base of GSWA / SleighVL (``configs/sleighvl_2b.py``).

    vlm-jax train --workdir=/ckpt/internvl2_2b \
        --config=configs/internvl2_2b.py:data=/data/sft.json,images=/data/images,tokenizer=/data/internlm2/tokenizer.model,init=/ckpt/InternVL2-2B-hf

Check that a step fits before renting the slice (AOT compile from a CPU host; measured: 7.5 GiB of 95 GiB
per v5p chip, ~1.5 CPU-minutes to compile)::

    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/internvl2_2b.py --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=8 --seq_len=4096

Sweepable arguments (``:key=value,...``): ``data``, ``images``, ``tokenizer``, ``init`` (HF checkpoint),
``steps`` (one epoch of the data at global batch 128), ``batch_size`` (global, default 128).
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps", *blocks.LLAVA_JSON_ARGS))
    model = blocks.bf16(presets.internvl2_2b())
    data = blocks.llava_json_data(args, dict(kind="internvl", tile=448, max_tiles=12, norm="imagenet"),
                                  template="chatml", tokenizer="/data/internlm2/tokenizer.model",
                                  batch_size=128, seq_buckets=(2048, 4096))
    recipe = [dict(name="finetune", steps=int(args.get("steps", 5000)), train=["projector/.*", "llm/.*"],
                   lr=4e-5, warmup=0.03)]
    train = blocks.train_block(recipe, weight_decay=0.01, max_replicated=0.05)
    mesh = dict(data=1, fsdp=-1, tensor=1)
    return blocks.make_config(model=model, data=data, train=train, mesh=mesh,
                              init=dict(hf_dir=args.get("init", "")))
