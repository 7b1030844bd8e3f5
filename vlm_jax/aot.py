"""Ahead-of-time compile of the real train step for a TPU topology, from a CPU host.

DESIGN.md "TPU without TPUs" (anchors.md §MaxText ``train_compile.py``): with ``libtpu`` installed,
``jax.experimental.topologies.get_topology_desc("v5p:2x2x2", "tpu")`` gives compile-only TPU devices.
We build the trainer's mesh on them, take the abstract train state of one recipe stage from the trainer's
own builder (:mod:`vlm_jax.train.stage_state`: ``jax.ShapeDtypeStruct`` leaves with a ``NamedSharding``,
nothing is allocated), and lower + compile its jitted step. The compiled executable's memory and cost
analyses answer "will it fit, and how much work is a step" before any TPU is rented.

Per-device memory estimate (the XLA buffer assignment of one device)::

    total = arguments + outputs - aliased (donated state) + temporaries + generated code

compared with the HBM of one device (:data:`HBM_GIB_PER_CHIP` divided by the devices per chip, e.g.
v4 exposes each of its two TensorCores as a device). When the TPU compiler itself refuses the program
for lack of memory, the report says ``fits=False`` with the compiler's message instead of raising.

FLOPs and bytes accessed are XLA's cost analysis of the compiled program, which counts the body of a
``while`` loop once: the scanned layers (``vlm_jax.nn.stack``) are counted as one layer, so these are
lower bounds, useful to compare configurations with the same depth, not as model FLOPs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Mapping

import jax
import numpy as np

from vlm_jax import sharding
from vlm_jax.data.device import batch_sharding
from vlm_jax.model import VLMConfig, dummy_batch
from vlm_jax.run_config import RunConfig
from vlm_jax.train.recipe import pick_stage
from vlm_jax.train.stage_state import build_stage_state_from_config

GIB = 1024 ** 3

HBM_GIB_PER_CHIP = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v5p": 95, "TPU v6 lite": 32}
"""HBM per chip by ``device.device_kind`` (v4, v5e, v5p, v6e), from the Cloud TPU system-architecture
pages (cloud.google.com/tpu/docs/v4, v5e, v5p, v6e: 32, 16, 95 and 32 "GB" of HBM per chip). We read
those as GiB, as the runtime's HBM limits are close to these GiB values; the estimate is therefore
slightly optimistic for v5p (95 GB = 88.5 GiB if the page means 10^9 bytes)."""

_OOM = re.compile(r"RESOURCE_EXHAUSTED|[Rr]an out of memory")


@dataclasses.dataclass(frozen=True)
class CompileReport:
    """The outcome of :func:`compile_train_step`; byte counts are per device unless named ``global``.

    ``error`` holds the compiler's out-of-memory message when it refused the program (then the memory
    fields are 0, except the global state bytes, and ``fits`` is False).
    """

    topology: str
    device_kind: str
    num_devices: int
    mesh: dict[str, int]
    batch_size: int
    seq_len: int
    stage: str
    num_params: int
    num_trainable: int
    state_bytes_global: int
    hbm_bytes: int
    argument_bytes: int = 0
    output_bytes: int = 0
    alias_bytes: int = 0
    temp_bytes: int = 0
    code_bytes: int = 0
    flops: float = 0.0
    bytes_accessed: float = 0.0
    has_splash: bool = False
    lower_seconds: float = 0.0
    compile_seconds: float = 0.0
    error: str | None = None

    @property
    def total_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

    @property
    def fits(self) -> bool:
        return self.error is None and self.total_bytes <= self.hbm_bytes

    def table(self) -> str:
        """The report as an aligned two-column text table."""
        gib = lambda n: f"{n / GIB:.3f} GiB"  # noqa: E731
        rows = [
            ("topology", f"{self.topology} ({self.num_devices} x {self.device_kind})"),
            ("mesh", ", ".join(f"{k}={v}" for k, v in self.mesh.items())),
            ("batch x seq_len", f"{self.batch_size} x {self.seq_len}"),
            ("recipe stage", self.stage),
            ("parameters (trainable)", f"{self.num_params:,} ({self.num_trainable:,})"),
            ("train state, all devices", gib(self.state_bytes_global)),
            ("HBM / device", gib(self.hbm_bytes)),
        ]
        if self.error:
            rows += [("fits", "NO: the compiler ran out of memory"), ("compiler error", self.error)]
        else:
            rows += [
                ("arguments / device", gib(self.argument_bytes)),
                ("outputs / device", gib(self.output_bytes)),
                ("aliased (donated) / device", gib(self.alias_bytes)),
                ("temporaries / device", gib(self.temp_bytes)),
                ("generated code / device", gib(self.code_bytes)),
                ("total / device", gib(self.total_bytes)),
                ("fits", "yes" if self.fits else "NO"),
                ("XLA FLOPs / device (scan once)", f"{self.flops:.4g}"),
                ("XLA bytes accessed / device", f"{self.bytes_accessed:.4g}"),
                ("splash attention kernel", "yes" if self.has_splash else "no"),
            ]
        rows.append(("lower + compile time", f"{self.lower_seconds:.1f} s + {self.compile_seconds:.1f} s"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def topology_devices(topology: str) -> list:
    """Compile-only devices of a TPU ``topology`` such as ``"v5p:2x2x2"`` (libtpu, no TPU needed).

    Several processes may do this at once (parallel tests, a compile beside a CPU run): there is no
    TPU to guard, so libtpu's one-process lock file is waived with ``ALLOW_MULTIPLE_LIBTPU_LOAD``.
    """
    from jax.experimental import topologies

    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    return list(topologies.get_topology_desc(topology, "tpu").devices)


def hbm_bytes_per_device(devices) -> int:
    """HBM of one device: chip HBM (:data:`HBM_GIB_PER_CHIP`) / devices per chip (same ``coords``)."""
    kind = devices[0].device_kind
    if kind not in HBM_GIB_PER_CHIP:
        raise ValueError(f"no HBM size known for device kind {kind!r}; known: {sorted(HBM_GIB_PER_CHIP)}")
    chips = {tuple(getattr(d, "coords", (d.id,))) for d in devices}
    return HBM_GIB_PER_CHIP[kind] * GIB * len(chips) // len(devices)


def abstract_batch(model_cfg: VLMConfig, mesh, batch_size: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
    """``dummy_batch`` shapes, sharded over the batch axes with the trainer's ``batch_sharding``."""
    axes = dict(sharding.LOGICAL_AXIS_RULES)["act_batch"]
    if batch_size % math.prod(mesh.shape[a] for a in axes):
        raise ValueError(f"batch_size={batch_size} is not divisible by the batch mesh axes "
                         f"{ {a: mesh.shape[a] for a in axes} }")
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding(mesh))
            for k, v in dummy_batch(model_cfg, batch_size, seq_len).items()}


def parse_mesh(text: str) -> dict[str, int]:
    """``"data=1,fsdp=8,tensor=1"`` → ``{"data": 1, "fsdp": 8, "tensor": 1}`` (mesh axes only)."""
    sizes = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or name not in sharding.MESH_AXES or not value.lstrip("-").isdigit():
            raise ValueError(f"bad mesh item {item!r}: expected <axis>=<int> with axis in {sharding.MESH_AXES}")
        sizes[name] = int(value)
    return sizes


def _nbytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _numel(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def compile_train_step(config, topology: str, mesh: Mapping[str, int] | None = None,
                       batch_size: int | None = None, seq_len: int | None = None,
                       stage: str | None = None) -> CompileReport:
    """Compile ``config``'s train step for a TPU ``topology`` such as ``"v5p:2x2x2"``.

    Args:
      config: an ml_collections config with ``model``, ``train``, ``mesh`` and ``data`` blocks.
      topology: a libtpu topology name ``<generation>:<AxBxC>`` (``v4``, ``v5e``, ``v5p``, ``v6e``).
      mesh: overrides of ``config.mesh`` sizes (``data``, ``fsdp``, ``tensor``, ``sequence``; -1 = rest).
      batch_size: global batch; default the ``batch_size`` of the stage's data block (``Stage.data``: ``config.data``
        or ``config.datasets.<name>``), whose ``accum`` the step uses.
      seq_len: token length; default the longest of the stage's data block's ``seq_buckets``.
      stage: recipe stage name; default the last stage (:func:`pick_stage`).
    """
    devices = topology_devices(topology)
    sizes = {**{"sequence": 1}, **dict(config.mesh), **dict(mesh or {})}
    unknown = sorted(set(sizes) - set(sharding.MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh axes {unknown}; known: {sharding.MESH_AXES}")
    device_mesh = sharding.make_mesh(**sizes, devices=devices)
    recipe_stage = pick_stage(config.train, stage)
    stream = RunConfig.from_config(config).stream(recipe_stage)
    batch_size = batch_size or stream.batch_size
    seq_len = seq_len or max(stream.seq_buckets)

    model_cfg = VLMConfig.from_dict(config.model.to_dict())
    stage_state = build_stage_state_from_config(model_cfg, recipe_stage, device_mesh, config.train,
                                                accum=stream.accum)
    state = stage_state.abstract
    batch = abstract_batch(model_cfg, device_mesh, batch_size, seq_len)
    report = CompileReport(
        topology=topology, device_kind=devices[0].device_kind, num_devices=len(devices),
        mesh=dict(device_mesh.shape), batch_size=batch_size, seq_len=seq_len, stage=stage_state.stage.name,
        num_params=_numel(state.params), num_trainable=_numel(stage_state.split(state.params)[0]),
        state_bytes_global=_nbytes(state), hbm_bytes=hbm_bytes_per_device(devices))
    start = time.perf_counter()
    with sharding.use_mesh(device_mesh):
        lowered = stage_state.jit_step().lower(state, batch)
    report = dataclasses.replace(report, lower_seconds=time.perf_counter() - start)
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        if not _OOM.search(str(e)):
            raise
        return dataclasses.replace(report, compile_seconds=time.perf_counter() - start,
                                   error=str(e).strip().splitlines()[0][:500])
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = compiled.as_text()
    return dataclasses.replace(
        report, argument_bytes=mem.argument_size_in_bytes, output_bytes=mem.output_size_in_bytes,
        alias_bytes=mem.alias_size_in_bytes, temp_bytes=mem.temp_size_in_bytes,
        code_bytes=mem.generated_code_size_in_bytes, flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
        has_splash='custom_call_target="tpu_custom_call"' in hlo and "splash_mha" in hlo,
        compile_seconds=seconds)
