"""TPU projection of the real-size presets (issue 11, item 7), from ahead-of-time compiles on this CPU host.

For each preset's heaviest recipe stage (the last one) at the size of the README's compile table, on a v5p
slice: :func:`vlm_jax.aot.compile_train_step` gives XLA's FLOPs and bytes per device and the memory per device.
XLA's cost analysis counts a loop body once: the scanned layers look like one layer, and loops XLA makes
itself (e.g. matmuls windowed over an all-gather under fsdp) are undercounted too. The scan-corrected FLOPs
therefore take the matmuls from the step's own jaxpr with every scan iteration (:mod:`benchmarks.jaxpr_flops`,
divided over the devices) and add XLA's non-matmul work (its count above the jaxpr's matmuls counted its way,
scans once; 0 when below). Bytes are XLA's, scaled by the same factor (the uncounted iterations assumed as
memory-intensive as the counted program).

Roofline per device: ``step = max(FLOPs / peak bf16 FLOP/s, bytes / HBM bandwidth)`` (chip figures divided
by the devices per chip), with no allowance for collectives; MFU = model FLOPs (matmuls of the same step
without remat) / (devices · peak · step). Splash attention is a custom kernel: neither XLA nor the jaxpr
sees its FLOPs, so attention is outside both counts (the projected step is a lower bound). The check: the
program fits in HBM, and XLA's FLOPs are within 2× of the jaxpr's matmuls counted XLA's way (a missing or
doubled part of the model would break it; InternVL2-2B at 4096 tokens gives 0.78, XLA's own loops).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import jax

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.jaxpr_flops import matmul_flops
from benchmarks.results import Check, Row
from vlm_jax import aot, sharding
from vlm_jax.model import VLMConfig
from vlm_jax.train.recipe import pick_stage
from vlm_jax.train.stage_state import build_stage_state_from_config

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
TOPOLOGY, FSDP_MESH, BATCH = "v5p:2x2x2", dict(data=1, fsdp=8, tensor=1), 8
CASES = {  # (preset, config argument, mesh override, seq_len)
    "full": [("sleighvl_2b", None, FSDP_MESH, 4096), ("hires_llava_7b", None, FSDP_MESH, 2048),
             ("inf_llava_8b", None, FSDP_MESH, 2048), ("slime_8b", None, FSDP_MESH, 2048),
             ("slime_7b", None, FSDP_MESH, 2048)],
    "quick": [("sleighvl_2b", "tiny", {}, 128)],
}
CHIP_PEAKS = {  # device kind: (bf16 FLOP/s, HBM bytes/s) per chip, Cloud TPU system-architecture pages
    "TPU v4": (275e12, 1.2e12), "TPU v5 lite": (197e12, 0.819e12), "TPU v5": (459e12, 2.765e12),
    "TPU v5p": (459e12, 2.765e12), "TPU v6 lite": (918e12, 1.64e12)}
XLA_TO_JAXPR = (0.5, 2.0)  # accepted XLA FLOPs / jaxpr matmul FLOPs, both counting loop bodies once


def load_config(preset: str, arg: str | None):
    """``configs/<preset>.py``'s ``get_config(arg)``."""
    spec = importlib.util.spec_from_file_location(f"configs.{preset}", os.path.join(CONFIG_DIR, f"{preset}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _step_jaxpr(model_cfg: VLMConfig, config, mesh, stage: str, seq_len: int):
    """The jaxpr of the trainer's step (:func:`build_stage_state_from_config`) on abstract inputs."""
    stage_state = build_stage_state_from_config(model_cfg, pick_stage(config.train, stage), mesh, config.train)
    batch = aot.abstract_batch(model_cfg, mesh, BATCH, seq_len)
    with sharding.use_mesh(mesh):
        return jax.make_jaxpr(stage_state.train_step)(stage_state.abstract, batch)


def _without_remat(cfg: VLMConfig) -> VLMConfig:
    return dataclasses.replace(cfg, vision=cfg.vision.replace(remat="none"), llm=cfg.llm.replace(remat="none"))


def project(preset: str, arg: str | None, mesh_override: dict, seq_len: int) -> Row:
    config = load_config(preset, arg)
    report = aot.compile_train_step(config, TOPOLOGY, mesh_override, BATCH, seq_len)
    devices = aot.topology_devices(TOPOLOGY)
    mesh = sharding.make_mesh(**{"sequence": 1, **dict(config.mesh), **mesh_override}, devices=devices)
    model_cfg = VLMConfig.from_dict(config.model.to_dict())
    step = _step_jaxpr(model_cfg, config, mesh, report.stage, seq_len)
    every, once = matmul_flops(step), matmul_flops(step, scans_once=True)
    model_flops = matmul_flops(_step_jaxpr(_without_remat(model_cfg), config, mesh, report.stage, seq_len))
    n = report.num_devices
    flops = every / n + max(report.flops - once / n, 0.0)
    bytes_accessed = report.bytes_accessed * flops / report.flops
    per_chip = n // len({tuple(getattr(d, "coords", (d.id,))) for d in devices})
    peak, hbm = (x / per_chip for x in CHIP_PEAKS[report.device_kind])
    seconds = max(flops / peak, bytes_accessed / hbm)
    mfu = model_flops / (n * peak * seconds)
    agreement = report.flops / (once / n)
    fits = report.fits
    check = Check(fits and XLA_TO_JAXPR[0] <= agreement <= XLA_TO_JAXPR[1],
                  f"{'fits' if fits else 'does NOT fit'} ({report.total_bytes / aot.GIB:.1f} of "
                  f"{report.hbm_bytes / aot.GIB:.0f} GiB); XLA/jaxpr FLOPs (scans once) {agreement:.2f}")
    details = dict(preset=preset, arg=arg, topology=TOPOLOGY, mesh=report.mesh, batch=BATCH, seq_len=seq_len,
                   stage=report.stage, params=report.num_params, trainable=report.num_trainable,
                   xla_flops_per_device_scans_once=report.flops, xla_bytes_per_device_scans_once=report.bytes_accessed,
                   jaxpr_matmul_flops=every, jaxpr_matmul_flops_scans_once=once, model_flops=model_flops,
                   flops_per_device=flops, bytes_per_device=bytes_accessed, peak_flops_per_device=peak,
                   hbm_bytes_per_second_per_device=hbm, compute_seconds=flops / peak,
                   memory_seconds=bytes_accessed / hbm, memory_per_device_bytes=report.total_bytes,
                   compile_seconds=report.lower_seconds + report.compile_seconds)
    name = preset + (f":{arg}" if arg else "")
    return Row(f"TPU {name}/{report.stage} {TOPOLOGY} {BATCH}x{seq_len}: roofline step (s), "
               f"{flops / 1e12:.3g} TFLOP/dev, MFU {100 * mfu:.0f}%", seconds, None, False, check, details)


def run(ctx: RunContext) -> list[Row]:
    return [project(*case) for case in ctx.pick(CASES)]


BENCHMARK = Benchmark("tpu_projection", "roofline step time and MFU of the real-size presets on a v5p slice, from "
                      "AOT compiles (scan-corrected FLOPs)", run, sizes=("full", "quick"))
