"""Train step of the LLaVA-style benchmark model, vlm_jax vs transformers + torch on the same weights and batch.

One step = forward, backward, global-norm clipping to 1.0 and AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8,
weight decay 0.1 on matrices only, as :func:`vlm_jax.train.optimizer.decay_mask`), every parameter trained.
vlm_jax: the trainer's state builder (:func:`vlm_jax.train.stage_state.build_stage_state`, one device) for a
one-stage recipe of 10⁹ steps without warm-up (its cosine schedule is constant over the measured steps), its
jitted step with the state donated. torch: ``LlavaForConditionalGeneration(labels=…)``, ``clip_grad_norm_`` and
``AdamW(fused=True)`` (transformers' default optimizer).

Both sides take the same sequence of steps (warm-up included), so step k's loss must agree: the check is
``|Δloss| ≤ 1e-5 · |loss|`` at every step (float32; the first step checks the forward, the later ones the
updates). Achieved FLOP/s use the analytic count of :mod:`benchmarks.flops` for both frameworks.
"""

from __future__ import annotations

import jax
import torch
from flax import nnx
from jax.sharding import Mesh

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.flops import train_step_flops
from benchmarks.llava_pair import SIZES, build_pair, image_prompts
from benchmarks.peaks import matmul_peak
from benchmarks.results import Row, within
from benchmarks.timing import interleaved, median, timed
from vlm_jax import sharding
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.train.recipe import Stage
from vlm_jax.train.stage_state import StageState, build_stage_state

LR, WEIGHT_DECAY, GRAD_CLIP = 1e-4, 0.1, 1.0
LOSS_RTOL = 1e-5

SETUPS = {"full": (4, 1024, 256), "quick": (2, 384, 64), "tiny": (2, 48, 8)}  # batch, seq_len, answer tokens


def benchmark_state(model_cfg: VLMConfig, mesh: Mesh) -> StageState:
    """The library's abstract train state (:func:`vlm_jax.train.stage_state.build_stage_state`) of a one-stage
    recipe training every parameter with the module docstring's settings."""
    stage = Stage(name="benchmark", steps=10 ** 9, train=(".*",), lr=LR, warmup=0.0)
    return build_stage_state(model_cfg, stage, mesh, optimizer=dict(weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP))


def one_device_mesh() -> Mesh:
    return sharding.make_mesh(data=1, devices=jax.devices()[:1])


def jax_trainer(model: VLM):
    """``step(batch) -> loss`` closure over vlm_jax's jitted train step and its (donated) state."""
    mesh = one_device_mesh()
    stage_state = benchmark_state(model.cfg, mesh)
    state = [stage_state.create(nnx.state(model), 0)]
    step = stage_state.jit_step()

    def run(batch):
        with sharding.use_mesh(mesh):
            state[0], metrics = step(state[0], batch)
        return float(jax.block_until_ready(metrics)["loss"])

    return run


def torch_trainer(model):
    """``step(prompts) -> loss`` closure over the HF model and a fused AdamW with the same settings."""
    model.train()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW([dict(params=[p for p in params if p.ndim >= 2], weight_decay=WEIGHT_DECAY),
                                   dict(params=[p for p in params if p.ndim < 2], weight_decay=0.0)],
                                  lr=LR, betas=(0.9, 0.999), eps=1e-8, fused=True)

    def run(prompts):
        optimizer.zero_grad(set_to_none=True)
        loss = model(**prompts.hf_inputs, labels=prompts.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        return float(loss.detach())

    return run


def run(ctx: RunContext) -> list[Row]:
    size, (batch_size, seq_len, answer) = ctx.pick(SIZES), ctx.pick(SETUPS)
    hf, ours = build_pair(size)
    prompts = image_prompts(size, batch_size, seq_len, answer)
    ours_step, torch_step = jax_trainer(ours), torch_trainer(hf)
    batch = jax.device_put(prompts.batch)
    compile_seconds, first_loss = timed(lambda: ours_step(batch))  # compiles; its loss is step 0
    first_torch = torch_step(prompts)
    seconds, losses = interleaved({"vlm_jax": lambda: ours_step(batch), "torch": lambda: torch_step(prompts)},
                                  warmup=ctx.warmup, repeats=ctx.repeats)
    ours_losses, torch_losses = [first_loss, *losses["vlm_jax"]], [first_torch, *losses["torch"]]
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours_losses, torch_losses))
    check = within(f"max |Δloss|/|loss| over {len(ours_losses)} steps", worst, LOSS_RTOL)
    flops = train_step_flops(size, batch_size, seq_len)
    t_ours, t_torch = median(seconds["vlm_jax"]), median(seconds["torch"])
    peak = matmul_peak(ctx)
    n_params = sum(p.numel() for p in hf.parameters())
    shape = f"{n_params / 1e6:.1f}M params, {batch_size}x{seq_len}"
    details = dict(size=size.__dict__, batch=batch_size, seq_len=seq_len, answer_tokens=answer, params=n_params,
                   seconds=seconds, compile_and_first_step_seconds=compile_seconds, losses_vlm_jax=ours_losses,
                   losses_torch=torch_losses, flops=flops, matmul_peak_flops={k: peak[k] for k in ("jax", "torch")})
    gflops = flops["total"] / 1e9
    return [
        Row(f"train step fwd+bwd+AdamW, {shape} (s) vs torch", t_ours, t_torch, False, check, details),
        Row(f"train step achieved GFLOP/s ({gflops:.3g} GFLOP/step) vs torch", gflops / t_ours, gflops / t_torch,
            True),
        Row("train step FLOP/s, % of own f32 matmul peak vs torch", 100 * flops["total"] / t_ours / peak["jax"],
            100 * flops["total"] / t_torch / peak["torch"], True),
    ]


BENCHMARK = Benchmark("train_step", "LLaVA-style train step (fwd+bwd+AdamW) vs transformers + torch", run)
