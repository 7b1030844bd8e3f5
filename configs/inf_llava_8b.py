r"""INF-LLaVA-8B [336+1008] (spec/methods.md §5): dual-perspective cropping (9 contiguous + 9 strided 336 crops of
the 1008 square + the low-res view), DEM (official-code variant), mlp2x_gelu, Llama-3-8B. Two stages (§5.3, as the
official scripts run them):

=========  ============  =====  ======================================  ========  ============================
stage      trains        lr     data (``Stage.data``)                   template  global batch
=========  ============  =====  ======================================  ========  ============================
pretrain   DEM + MLP     1e-3   ``captions``: LAION-CC-SBU 558K         plain     256 (16/GPU × accum 2 × 8)
finetune   + LLM         2e-5   ``default``: LLaVA-665K instructions    llama3    128 (8/GPU × accum 2 × 8)
=========  ============  =====  ======================================  ========  ============================

    vlm-jax train --workdir=/ckpt/inf_llava_8b \
        --config=configs/inf_llava_8b.py:data=/data/llava_v1_5_mix665k.json,images=/data,captions=/data/blip_laion_cc_sbu_558k.json,caption_images=/data/llava_pretrain/images,tokenizer=/data/llama3/tokenizer.model,init=/ckpt/llava-llama3-8b-hf
    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/inf_llava_8b.py --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=8 --seq_len=2048

Tiny variant (n = 2: 9 views of 32 px; generated EntityGrid-QA as both the captions, ``plain``, and the
instructions): ``--config=configs/inf_llava_8b.py:tiny``.
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps", *blocks.LLAVA_JSON_ARGS, *blocks.CAPTION_ARGS), tiny=("steps",))
    tiny = "tiny" in args
    steps = [int(args["steps"])] * 2 if "steps" in args else ([2, 2] if tiny else [2200, 5200])
    recipe = [dict(name="pretrain", steps=steps[0], train=["dem/.*", "projector/.*"], lr=1e-3, warmup=0.03,
                   data="captions"),
              dict(name="finetune", steps=steps[1], train=["dem/.*", "projector/.*", "llm/.*"], lr=2e-5,
                   warmup=0.03, data="default")]
    if tiny:
        model = blocks.tiny_towers(presets.inf_llava_8b(max_views=9, dem=dict(heads=2, ffn_ratio=4)),
                                   vision_kind="clip")
        data = blocks.entitygrid_data(dict(kind="dual", n=2, norm="clip"), canvas=64, batch_size=8,
                                      seq_buckets=(96, 128), eval_size=16)
        datasets = dict(captions=blocks.entitygrid_stream("captions", canvas=64, seed=1, template="plain",
                                                          batch_size=16, accum=2, seq_buckets=(96, 128)))
        train = blocks.train_block(recipe, log_every=1)
        mesh = dict(data=2, fsdp=2, tensor=2)
    else:
        model = blocks.bf16(presets.inf_llava_8b())
        data = blocks.llava_json_data(args, dict(kind="dual", tile=336, n=3, norm="clip"), template="llama3",
                                      tokenizer="/data/llama3/tokenizer.model", batch_size=128, accum=2,
                                      seq_buckets=(1024, 2048))
        datasets = dict(captions=blocks.caption_stream(args, batch_size=256, accum=2, seq_buckets=(1024, 2048)))
        train = blocks.train_block(recipe, max_replicated=0.05)
        mesh = dict(data=1, fsdp=-1, tensor=1)
    init = dict(hf_dir=args.get("init", ""))  # HF LLaVA checkpoint (CLIP-L/336 + Llama-3-8B) to start from
    return blocks.make_config(model=model, data=data, datasets=datasets, train=train, mesh=mesh, init=init)
