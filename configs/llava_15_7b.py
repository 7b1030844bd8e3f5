r"""LLaVA-1.5-7B (CLIP ViT-L/14-336, layer -2 + mlp2x_gelu projector + Vicuna-7B v1.5, one 336 px view,
576 visual tokens) with its two-stage recipe (spec/methods.md §5.3 / §6.5, LLaVA code):

=========  ===============  =====  ============  ==========  ==========
stage      trains           lr     global batch  data        template
=========  ===============  =====  ============  ==========  ==========
pretrain   projector        1e-3   256           558K caps   plain
finetune   projector + LLM  2e-5   128           665K mix    vicuna_v1
=========  ===============  =====  ============  ==========  ==========

One run is one stage (``:stage=pretrain`` or ``:stage=finetune``); fine-tuning starts from the
pre-trained projector. Both: AdamW, no weight decay, cosine with 3% warm-up, bf16 compute with float32
master weights, full remat, max length 2048, one epoch (``steps`` = examples / global batch).
``data.batch_size`` is the global batch. The image is stretched to
336x336 (a 1x1 ``fixed`` grid) where LLaVA-1.5 pads it to a square first.

    vlm-jax train --workdir=/ckpt/llava15_sft \
        --config=configs/llava_15_7b.py:stage=finetune,data=/data/llava_v1_5_mix665k.json,images=/data/images,tokenizer=/data/vicuna/tokenizer.model

AOT check of the fine-tuning step (the larger one: the LLM trains) from a CPU host; measured: 19.5 GiB of
95 GiB per v5p chip::

    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/llava_15_7b.py:stage=finetune --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=16 --seq_len=2048

Sweepable arguments: ``stage``, ``data``, ``images``, ``tokenizer``, ``init``, ``steps``, ``batch_size``.
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets

STAGES = {
    "pretrain": dict(train=["projector/.*"], lr=1e-3, steps=2170, template="plain", batch_size=256),
    "finetune": dict(train=["projector/.*", "llm/.*"], lr=2e-5, steps=5198, template="vicuna_v1", batch_size=128),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("stage", "steps", *blocks.LLAVA_JSON_ARGS))
    name, stage = blocks.pick_stage(args, STAGES, "finetune")
    model = blocks.bf16(presets.llava_15_7b())
    data = blocks.llava_json_data(args, dict(kind="fixed", tile=336, rows=1, cols=1, global_view="none",
                                             norm="clip"),
                                  template=stage["template"], tokenizer="/data/vicuna/tokenizer.model",
                                  batch_size=stage["batch_size"], seq_buckets=(1024, 2048))
    recipe = [dict(name=name, steps=int(args.get("steps", stage["steps"])), train=stage["train"], lr=stage["lr"],
                   warmup=0.03)]
    train = blocks.train_block(recipe, max_replicated=0.05)
    mesh = dict(data=1, fsdp=-1, tensor=1)
    return blocks.make_config(model=model, data=data, train=train, mesh=mesh,
                              init=dict(hf_dir=args.get("init", "")))
