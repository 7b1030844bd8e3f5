"""The outputs of a run: the printed table (measurement | vlm_jax | peer | ratio | check) and the JSON record."""

from __future__ import annotations

import json
import math

from benchmarks.results import Row

HEADER = ("measurement", "vlm_jax", "peer", "ratio", "check")


def _number(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or not math.isfinite(x) or not 1e-3 <= abs(x) < 1e6:
        return f"{x:.3g}"
    digits = max(0, 3 - int(math.floor(math.log10(abs(x)))) - 1)
    return f"{x:,.{min(digits, 4)}f}"


def _check(row: Row) -> str:
    if row.check is None:
        return ""
    return f"{'ok' if row.check.passed else 'FAILED'}: {row.check.detail}"


def table(rows: list[Row]) -> str:
    """A Markdown table; ``ratio`` is vlm_jax's speed over the peer's (> 1: vlm_jax faster)."""
    lines = [[cell.replace("|", "\\|") for cell in  # escaped for Markdown
              (r.measurement, _number(r.ours), _number(r.peer), "-" if r.ratio is None else f"{r.ratio:.2f}x",
               _check(r))] for r in rows]
    widths = [max(len(HEADER[i]), *(len(line[i]) for line in lines)) if lines else len(HEADER[i])
              for i in range(len(HEADER))]

    def fmt(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([fmt(HEADER), "| " + " | ".join("-" * w for w in widths) + " |", *map(fmt, lines)])


def record(machine: dict, settings: dict, results: dict[str, dict]) -> dict:
    """The JSON document: machine, settings, every benchmark's rows (with all their numbers) and wall time,
    and whether every check passed."""
    checks = [row["check"]["passed"] for r in results.values() for row in r["rows"] if row["check"] is not None]
    failed = [name for name, r in results.items() if r.get("error")]
    return {"machine": machine, "settings": settings, "benchmarks": results,
            "all_checks_passed": all(checks) and not failed, "errors": failed}


def write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, default=float)
        f.write("\n")
