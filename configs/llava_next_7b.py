r"""LLaVA-NeXT-7B (vicuna): LLaVA-1.5's towers with anyres tiling (base view + up to 4 tiles of 336 px on
the pinpoint grids, unpad + ``image_newline``, a static capacity of 2,976 visual tokens), two stages (LLaVA-NeXT blog
and code, as recalled: check against the release):

=========  ==============================================  =====  ============  ========
stage      trains                                          lr     global batch  template
=========  ==============================================  =====  ============  ========
pretrain   projector                                       1e-3   256           plain
finetune   projector + newline + LLM + vision (lr x 0.1)   2e-5   128           vicuna_v1
=========  ==============================================  =====  ============  ========

One run is one stage (``:stage=...``). AdamW, no weight decay, cosine with 3% warm-up, bf16 compute with
float32 master weights, full remat, max length 4096. ``data.batch_size`` is the global batch.

    vlm-jax train --workdir=/ckpt/llava_next_sft \
        --config=configs/llava_next_7b.py:stage=finetune,data=/data/next_779k.json,images=/data/images,tokenizer=/data/vicuna/tokenizer.model

AOT check of the fine-tuning step (the larger one: every tower trains) from a CPU host; measured:
20.9 GiB of 95 GiB per v5p chip::

    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/llava_next_7b.py:stage=finetune --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=8 --seq_len=4096

Sweepable arguments: ``stage``, ``data``, ``images``, ``tokenizer``, ``init``, ``steps``, ``batch_size``.
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets

STAGES = {
    "pretrain": dict(train=["projector/.*"], lr=1e-3, steps=2170, template="plain", batch_size=256, lr_scale={}),
    "finetune": dict(train=["projector/.*", "image_newline", "llm/.*", "vision/.*"], lr=2e-5, steps=6086,
                     template="vicuna_v1", batch_size=128, lr_scale={"vision/.*": 0.1}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("stage", "steps", *blocks.LLAVA_JSON_ARGS))
    name, stage = blocks.pick_stage(args, STAGES, "finetune")
    model = blocks.bf16(presets.llava_next_7b())
    data = blocks.llava_json_data(args, dict(kind="anyres", tile=336, pinpoints=presets.LLAVA_NEXT_PINPOINTS,
                                             norm="clip"),
                                  template=stage["template"], tokenizer="/data/vicuna/tokenizer.model",
                                  batch_size=stage["batch_size"], seq_buckets=(2048, 4096))
    recipe = [dict(name=name, steps=int(args.get("steps", stage["steps"])), train=stage["train"], lr=stage["lr"],
                   warmup=0.03, lr_scale=stage["lr_scale"])]
    train = blocks.train_block(recipe, max_replicated=0.05)
    mesh = dict(data=1, fsdp=-1, tensor=1)
    return blocks.make_config(model=model, data=data, train=train, mesh=mesh,
                              init=dict(hf_dir=args.get("init", "")))
