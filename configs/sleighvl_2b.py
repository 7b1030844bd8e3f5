r"""SleighVL = InternVL2-2B + GSWA (spec/methods.md §3), fine-tuned with InternVL2's 2nd-stage recipe (§2.1:
ViT frozen; projector, LLM and GSWA trained; LR 4e-5, wd 0.01, warm-up 0.03, cosine, global batch 128, bf16). GSWA
starts as the identity, so the converted InternVL2-2B behaves unchanged at step 0.

    vlm-jax train --workdir=/ckpt/sleighvl_2b \
        --config=configs/sleighvl_2b.py:data=/data/sft.json,images=/data/images,tokenizer=/data/internlm2/tokenizer.model,init=/ckpt/InternVL2-2B-hf
    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/sleighvl_2b.py --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=8 --seq_len=4096

Tiny variant (CPU, generated EntityGrid-QA, InternVL tiling of 32 px tiles):

    vlm-jax train --config=configs/sleighvl_2b.py:tiny --workdir=/tmp/sleighvl_tiny
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps", *blocks.LLAVA_JSON_ARGS), tiny=("steps",))
    tiny = "tiny" in args
    recipe = [dict(name="finetune", steps=int(args.get("steps", 2 if tiny else 5000)),
                   train=["projector/.*", "llm/.*", "gswa/.*"], lr=4e-5, warmup=0.03)]
    if tiny:
        model = blocks.tiny_towers(presets.sleighvl_2b(max_views=5, gswa=dict(dim=32, layers=2, heads=2)),
                                   vision_kind="internvit")
        data = blocks.entitygrid_data(dict(kind="internvl", max_tiles=4, norm="imagenet"), canvas=64,
                                      batch_size=8, seq_buckets=(128, 160), eval_size=16)
        train = blocks.train_block(recipe, log_every=1, weight_decay=0.01)
        mesh = dict(data=2, fsdp=2, tensor=2)
    else:
        model = blocks.bf16(presets.sleighvl_2b())
        data = blocks.llava_json_data(args, dict(kind="internvl", tile=448, max_tiles=12, norm="imagenet"),
                                      template="chatml", tokenizer="/data/internlm2/tokenizer.model",
                                      batch_size=128, seq_buckets=(2048, 4096))
        train = blocks.train_block(recipe, weight_decay=0.01, max_replicated=0.05)
        mesh = dict(data=1, fsdp=-1, tensor=1)
    init = dict(hf_dir=args.get("init", ""))  # HF InternVL checkpoint (safetensors) to start from
    return blocks.make_config(model=model, data=data, train=train, mesh=mesh, init=init)
