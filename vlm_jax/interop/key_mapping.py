"""Declarative key tables: our parameter paths ↔ Hugging Face checkpoint keys, with their tensor transforms.

A :class:`KeyMapping` is a tuple of :class:`Rule` s. A rule names one or more of our parameters by their
NNX path (``"encoder/layers/attn/q/kernel"``, relative to the module the mapping is applied to), one HF
key (``"encoder.layers.{i}.self_attn.q_proj.weight"``) and the :class:`~vlm_jax.interop.transforms.Transform`
between them. ``{i}`` in the HF key marks a scanned parameter: ours ``[L, …]`` ↔ one HF tensor per layer.

A family table declares every parameter the family can have; a rule whose parameters the module does
not have (a CLIP tower without biases, a tied decoder without ``lm_head``) does not apply. Both
directions stay complete: import fails on an HF tensor no applicable rule reads and on a parameter left
unset, export on a parameter no rule writes (:mod:`vlm_jax.interop.apply_mapping`).

Tables are composed with :meth:`KeyMapping.nest` (a tower under ``vision_tower.`` / ``vision/``) and
``+``; the helpers below spell the recurring blocks (linear layers, norms, attention projections).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from vlm_jax.interop.transforms import (
    IDENTITY,
    LINEAR,
    Transform,
    head_bias,
    heads_in,
    heads_out,
    packed_rows,
)

LAYER = "{i}"  # placeholder for the layer index in HF keys of scanned parameters


@dataclasses.dataclass(frozen=True)
class Rule:
    """Our parameter path(s) ``ours`` ↔ the HF key ``hf`` through ``transform`` (arity ``len(ours)``)."""

    ours: tuple[str, ...]
    hf: str
    transform: Transform = IDENTITY

    def __post_init__(self):
        if len(self.ours) != self.transform.arity:
            raise ValueError(f"rule {self.hf!r}: {len(self.ours)} parameters for transform {self.transform.name} "
                             f"of arity {self.transform.arity}")

    @property
    def stacked(self) -> bool:
        """Whether the HF key has one tensor per layer of a scanned ``[L, …]`` parameter."""
        return LAYER in self.hf

    def hf_key(self, layer: int | None = None) -> str:
        return self.hf.replace(LAYER, str(layer)) if layer is not None else self.hf


def rule(ours: str | tuple[str, ...], hf: str, transform: Transform = IDENTITY) -> Rule:
    return Rule((ours,) if isinstance(ours, str) else tuple(ours), hf, transform)


@dataclasses.dataclass(frozen=True)
class KeyMapping:
    """A checkpoint family's key table.

    ``ignored``: regular expressions of HF keys that carry nothing our model uses (read and dropped on
    import, never written). ``tied``: ``{hf_key: other_hf_key}`` for tensors a checkpoint may store twice
    (tied embeddings): when no applicable rule reads ``hf_key``, import accepts it only if it equals
    ``other_hf_key``; export never writes it.
    """

    rules: tuple[Rule, ...]
    ignored: tuple[str, ...] = ()
    tied: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        for what, names in (("parameter", [p for r in self.rules for p in r.ours]),
                            ("HF key", [r.hf for r in self.rules])):
            seen = set()
            dup = sorted({n for n in names if n in seen or seen.add(n)})
            if dup:
                raise ValueError(f"{what}s mapped twice in one key table: {dup[:5]}")

    def __add__(self, other: KeyMapping) -> KeyMapping:
        return KeyMapping(self.rules + other.rules, self.ignored + other.ignored, self.tied + other.tied)

    def nest(self, ours_prefix: str, hf_prefix: str) -> KeyMapping:
        """The same table for a submodule at ``ours_prefix`` (``"vision/"``) whose keys start with ``hf_prefix``."""
        return KeyMapping(tuple(Rule(tuple(ours_prefix + p for p in r.ours), hf_prefix + r.hf, r.transform)
                                for r in self.rules),
                          tuple(re.escape(hf_prefix) + pattern for pattern in self.ignored),
                          tuple((hf_prefix + a, hf_prefix + b) for a, b in self.tied))

    def without(self, part: KeyMapping) -> KeyMapping:
        """This table with the rules of ``part`` left out and their HF keys read past (ignored) on import."""
        dropped = {r.hf for r in part.rules}
        patterns = tuple(re.escape(hf).replace(re.escape(LAYER), r"\d+") for hf in sorted(dropped))
        return KeyMapping(tuple(r for r in self.rules if r.hf not in dropped), self.ignored + patterns, self.tied)

    def is_ignored(self, key: str) -> bool:
        return any(re.fullmatch(pattern, key) for pattern in self.ignored)


def table(*rules: Rule | Iterable[Rule], ignored: tuple[str, ...] = (),
          tied: tuple[tuple[str, str], ...] = ()) -> KeyMapping:
    """A :class:`KeyMapping` from rules and groups of rules (as the helpers below return them)."""
    flat: list[Rule] = []
    for r in rules:
        flat.extend([r] if isinstance(r, Rule) else r)
    return KeyMapping(tuple(flat), ignored, tied)


def linear(ours: str, hf: str) -> tuple[Rule, ...]:
    """``nn.Linear``: ``{ours}/kernel [in, out]`` ↔ ``{hf}.weight [out, in]``, ``{ours}/bias`` ↔ ``{hf}.bias``."""
    return rule(f"{ours}/kernel", f"{hf}.weight", LINEAR), rule(f"{ours}/bias", f"{hf}.bias")


def norm(ours: str, hf: str) -> tuple[Rule, ...]:
    """LayerNorm / RMSNorm: ``{ours}/scale`` ↔ ``{hf}.weight``, ``{ours}/bias`` ↔ ``{hf}.bias``."""
    return rule(f"{ours}/scale", f"{hf}.weight"), rule(f"{ours}/bias", f"{hf}.bias")


def projection_in(ours: str, hf: str, head_dim: int) -> tuple[Rule, ...]:
    """q / k / v projection: kernel ``[D, H, Dh]`` ↔ ``[H·Dh, D]``, bias ``[H, Dh]`` ↔ ``[H·Dh]``."""
    return rule(f"{ours}/kernel", f"{hf}.weight", heads_in(head_dim)), rule(f"{ours}/bias", f"{hf}.bias",
                                                                           head_bias(head_dim))


def projection_out(ours: str, hf: str, head_dim: int) -> tuple[Rule, ...]:
    """Attention output projection: kernel ``[H, Dh, D]`` ↔ ``[D, H·Dh]``, bias ``[D]``."""
    return rule(f"{ours}/kernel", f"{hf}.weight", heads_out(head_dim)), rule(f"{ours}/bias", f"{hf}.bias")


def packed_projections_in(ours: tuple[str, ...], weight: str, bias: str, head_dim: int,
                          width: int) -> tuple[Rule, ...]:
    """Projections packed row-wise in one HF linear layer (``torch.nn.MultiheadAttention``'s ``in_proj``,
    InternViT's ``attn.qkv``): ``weight [n·width, D]`` ↔ kernels ``[D, H, Dh]`` of ``ours`` in order,
    ``bias [n·width]`` ↔ biases ``[H, Dh]``."""
    n = len(ours)
    return (rule([f"{p}/kernel" for p in ours], weight, packed_rows([heads_in(head_dim)] * n, [width] * n)),
            rule([f"{p}/bias" for p in ours], bias, packed_rows([head_bias(head_dim)] * n, [width] * n)))
