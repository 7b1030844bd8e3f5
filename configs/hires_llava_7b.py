r"""HiRes-LLaVA-7B (spec/methods.md §4, numbers [inferred]): CLIP-L/14-336 slices (LLaVA-NeXT grids) with the
SliceRestore adapter inside ViT layers 5/11/17, the Self-Mining Sampler (576 → 144 tokens per slice), the low-res
global view first, mlp2x_gelu, Vicuna-7B. Three stages as the spec infers (§4: "three stages", no code; data,
templates and batch sizes [inferred] from LLaVA's recipe):

=========  ===========================  =====  ==========================================  =========  ============
stage      trains                       lr     data (``Stage.data``)                       template   global batch
=========  ===========================  =====  ==========================================  =========  ============
align      projector + sampler          1e-3   ``captions``: LLaVA pretrain 558K           plain      256
restore    + SliceRestore adapters      2e-4   ``highres``: high-resolution instructions   vicuna_v1  128
instruct   + LLM                        2e-5   ``default``: LLaVA-665K (+ EntityGrid-QA)   vicuna_v1  128
=========  ===========================  =====  ==========================================  =========  ============

    vlm-jax train --workdir=/ckpt/hires_llava_7b \
        --config=configs/hires_llava_7b.py:data=/data/llava_v1_5_mix665k.json,images=/data,captions=/data/blip_laion_cc_sbu_558k.json,caption_images=/data/llava_pretrain/images,highres=/data/highres.json,tokenizer=/data/vicuna/tokenizer.model,init=/ckpt/llava-v1.6-vicuna-7b-hf
    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/hires_llava_7b.py --topology=v5p:2x2x2 \
        --mesh=data=1,fsdp=8,tensor=1 --batch_size=8 --seq_len=2048

Tiny variant (generated EntityGrid-QA for every stage: ``plain`` captions, then instructions):
``--config=configs/hires_llava_7b.py:tiny``.
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps", "highres", *blocks.LLAVA_JSON_ARGS, *blocks.CAPTION_ARGS),
                             tiny=("steps",))
    tiny = "tiny" in args
    steps = [int(args["steps"])] * 3 if "steps" in args else ([2, 2, 2] if tiny else [2000, 2000, 5000])
    recipe = [
        dict(name="align", steps=steps[0], train=["projector/.*", "self_mining/.*"], lr=1e-3, warmup=0.03,
             data="captions"),
        dict(name="restore", steps=steps[1], train=["projector/.*", "self_mining/.*", "slice_restore/.*"], lr=2e-4,
             warmup=0.03, data="highres"),
        dict(name="instruct", steps=steps[2], train=["projector/.*", "self_mining/.*", "slice_restore/.*", "llm/.*"],
             lr=2e-5, warmup=0.03, data="default"),
    ]
    if tiny:
        tile = 32
        model = blocks.tiny_towers(presets.hires_llava_7b(
            slice_restore=dict(layers=(0,), max_rows=3, max_cols=3, heads=2, down=2),
            self_mining=dict(ratio=2, depth=1, heads=2)), vision_kind="clip", tile=tile)
        pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
        data = blocks.entitygrid_data(dict(kind="anyres", pinpoints=pinpoints, norm="clip"), canvas=64,
                                      batch_size=8, seq_buckets=(96, 128), eval_size=16)
        datasets = dict(
            captions=blocks.entitygrid_stream("captions", canvas=64, seed=1, template="plain", batch_size=16,
                                              seq_buckets=(96, 128)),
            highres=blocks.entitygrid_stream("highres", canvas=64, seed=2, template="chatml", batch_size=8,
                                             seq_buckets=(96, 128)))
        train = blocks.train_block(recipe, log_every=1)
        mesh = dict(data=2, fsdp=2, tensor=2)
    else:
        model = blocks.bf16(presets.hires_llava_7b())
        data = blocks.llava_json_data(args, dict(kind="anyres", tile=336, pinpoints=presets.LLAVA_NEXT_PINPOINTS,
                                                 norm="clip"), template="vicuna_v1",
                                      tokenizer="/data/vicuna/tokenizer.model", batch_size=128,
                                      seq_buckets=(1024, 2048))
        highres = blocks.llava_json_stream("highres", args.get("highres", "/data/highres.json"),
                                           args.get("images", "/data/images"), template="vicuna_v1", batch_size=128,
                                           seq_buckets=(1024, 2048))
        datasets = dict(captions=blocks.caption_stream(args, batch_size=256, seq_buckets=(1024, 2048)),
                        highres=highres)
        train = blocks.train_block(recipe, max_replicated=0.05)
        mesh = dict(data=1, fsdp=-1, tensor=1)
    init = dict(hf_dir=args.get("init", ""))  # HF LLaVA(-NeXT) checkpoint for the towers and projector
    return blocks.make_config(model=model, data=data, datasets=datasets, train=train, mesh=mesh, init=init)
