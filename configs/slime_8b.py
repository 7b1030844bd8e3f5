r"""SliME-8B (spec/methods.md §6): CLIP-L/14-336 with UHD slicing (≤ 7 slices), global mixture of adapters,
per-slice 144-query compression, text-guided selection (γ = 0.95), Llama-3-8B-Instruct. The alternating
recipe (§6.5): I-a MLP on the global view, I-b resampler (MLP frozen), II local compressor only (LLM sees only
local tokens, γ = 1), III everything but the ViT (γ = 0.95). ``:recipe=e2e`` trains all at once (on the
instructions) for comparison. ``:llm=vicuna`` gives SliME-7B (also ``configs/slime_7b.py``).

Data per stage, as the official scripts (§6.5; global batch = per-GPU × accum × 8 GPUs):

==========  =======================================================  =========  ================================
stage       data (``Stage.data``)                                    template   global batch
==========  =======================================================  =========  ================================
I-a, I-b    ``captions``: LLaVA pretrain 558K                        plain      256 (32 × 8)
II          8B: ``captions_local`` (the same 558K); 7B: ``captions``  plain      256 (8B: 8 × accum 4 × 8)
III         ``default``: ShareGPT4V mix665k + SMR (one JSON)         llama3/v1  128
==========  =======================================================  =========  ================================

    vlm-jax train --workdir=/ckpt/slime_8b \
        --config=configs/slime_8b.py:data=/data/sharegpt4v_mix665k_smr.json,images=/data,captions=/data/blip_laion_cc_sbu_558k.json,caption_images=/data/llava_pretrain/images,tokenizer=/data/llama3/tokenizer.model,init=/ckpt/llava-llama3-8b-hf
    JAX_PLATFORMS=cpu vlm-jax compile --config=configs/slime_8b.py --topology=v5p:2x2x2 --mesh=data=1,fsdp=8,tensor=1 \
        --batch_size=8 --seq_len=2048

Tiny variant (4 × 4 patch views, 4 global and 4 local queries per slice; generated EntityGrid-QA as both the
captions, ``plain``, and the instructions): ``--config=configs/slime_8b.py:tiny``.
"""

import ml_collections

from vlm_jax import config_blocks as blocks
from vlm_jax import presets


def recipe(steps: list[int], lrs: tuple[float, float], kind: str, local_data: str) -> list[dict]:
    """§6.5 stages as recipe data; ``options`` switch the connector per stage; ``local_data``: stage II's block."""
    if kind == "e2e":
        return [dict(name="e2e", steps=sum(steps), train=["slime/.*", "llm/.*"], lr=lrs[1], warmup=0.03)]
    if kind != "alternating":
        raise ValueError(f"unknown SliME recipe {kind!r} (alternating | e2e)")
    return [
        dict(name="I-a", steps=steps[0], train=["slime/projector/mlp/.*"], lr=lrs[0], warmup=0.03, data="captions",
             options={"slime.expert": 0, "slime.global_only": True, "slime.top_p": 1.0}),
        dict(name="I-b", steps=steps[1], train=["slime/projector/resampler/.*"], lr=lrs[0], warmup=0.03,
             data="captions", options={"slime.expert": 1, "slime.global_only": True, "slime.top_p": 1.0}),
        dict(name="II", steps=steps[2], train=["slime/sampler/.*"], lr=lrs[0], warmup=0.03, data=local_data,
             options={"slime.local_only": True, "slime.top_p": 1.0}),
        dict(name="III", steps=steps[3], train=["slime/.*", "llm/.*"], lr=lrs[1], warmup=0.03, data="default",
             options={"slime.top_p": 0.95}),
    ]


def caption_streams(kind: str, vicuna: bool, make_stream) -> dict[str, dict]:
    """The caption blocks of the alternating recipe: ``captions`` (stages I and II; global batch 256), and for
    Llama-3-8B ``captions_local``, the same captions with 4 micro-batches (its stage II script); none for e2e.
    ``make_stream(name, accum)`` builds one block."""
    if kind == "e2e":
        return {}
    names = {"captions": 1} if vicuna else {"captions": 1, "captions_local": 4}
    return {name: make_stream(name, accum) for name, accum in names.items()}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = blocks.parse_args(arg, ("steps", "llm", "recipe", *blocks.LLAVA_JSON_ARGS, *blocks.CAPTION_ARGS),
                             tiny=("steps", "llm", "recipe"))
    tiny = "tiny" in args
    vicuna = args.get("llm") == "vicuna"
    steps = [int(args["steps"])] * 4 if "steps" in args else ([2, 2, 2, 2] if tiny else [2200, 2200, 2200, 5200])
    lrs = (1e-3, 2e-5) if vicuna else (1e-3, 1e-5)  # paper Table 7
    base = presets.slime_7b() if vicuna else presets.slime_8b()
    kind = args.get("recipe", "alternating")
    stages = recipe(steps, lrs, kind, "captions" if vicuna else "captions_local")
    if tiny:
        model = blocks.tiny_towers(dict(base, max_views=5, slime=dict(global_grid=4, local_grid=2, num_heads=2)),
                                   vision_kind="clip")
        data = blocks.entitygrid_data(dict(kind="uhd", max_slices=3, norm="clip"), canvas=64, batch_size=8,
                                      seq_buckets=(96, 128), eval_size=16)
        datasets = caption_streams(kind, vicuna, lambda name, accum: blocks.entitygrid_stream(
            name, canvas=64, seed=1, template="plain", batch_size=16, accum=min(accum, 2), seq_buckets=(96, 128)))
        train = blocks.train_block(stages, log_every=1)
        mesh = dict(data=2, fsdp=2, tensor=2)
    else:
        model = blocks.bf16(base)
        data = blocks.llava_json_data(args, dict(kind="uhd", tile=336, max_slices=6, norm="clip"),
                                      template="vicuna_v1" if vicuna else "llama3",
                                      tokenizer="/data/vicuna/tokenizer.model" if vicuna
                                      else "/data/llama3/tokenizer.model", batch_size=128,
                                      seq_buckets=(1024, 2048))
        datasets = caption_streams(kind, vicuna, lambda name, accum: blocks.caption_stream(
            args, name=name, batch_size=256, accum=accum, seq_buckets=(1024, 2048)))
        train = blocks.train_block(stages, max_replicated=0.05)
        mesh = dict(data=1, fsdp=-1, tensor=1)
    init = dict(hf_dir=args.get("init", ""))  # HF LLaVA checkpoint (CLIP-L/336 + LLM) to start from
    return blocks.make_config(model=model, data=data, datasets=datasets, train=train, mesh=mesh, init=init)
