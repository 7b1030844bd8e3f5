"""Table rows: one measured figure of vlm_jax beside its peer, the speed ratio and the correctness check."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Check:
    """Whether both sides agreed (``detail`` names the compared quantity, the worst difference and the bound)."""

    passed: bool
    detail: str


def within(name: str, difference: float, bound: float) -> Check:
    """``difference <= bound`` as a :class:`Check` reading ``"<name> <difference> <= <bound>"``."""
    passed = bool(difference <= bound)
    return Check(passed, f"{name} {difference:.2g} {'<=' if passed else '>'} {bound:.2g}")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes:
      measurement: what was measured, with the unit and the peer's name (e.g. ``"... (s) vs torch"``).
      ours, peer: the two values (``peer`` is None when the figure has no peer).
      higher_is_better: True for rates (tokens/s), False for times.
      check: the correctness check of this figure, or None when the row only reports a number.
      details: every number behind the row (raw timings, sizes, floors), for the JSON file.
    """

    measurement: str
    ours: float | None
    peer: float | None = None
    higher_is_better: bool = False
    check: Check | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """vlm_jax's speed relative to the peer: > 1 means vlm_jax is faster (or higher for rates)."""
        if self.ours is None or self.peer is None or not self.ours or not self.peer:
            return None
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours

    def to_json(self) -> dict[str, Any]:
        return {"measurement": self.measurement, "vlm_jax": self.ours, "peer": self.peer, "ratio": self.ratio,
                "higher_is_better": self.higher_is_better,
                "check": None if self.check is None else dataclasses.asdict(self.check), "details": self.details}
