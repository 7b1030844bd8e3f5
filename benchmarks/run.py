"""``python -m benchmarks.run [--quick] [--only=NAME,...] [--out=FILE.json]``: every benchmark of the registry
in one process, a table on stdout and a JSON file with every number, the machine and the date.

The exit status is 1 when a correctness check failed or a benchmark raised (both are shown in the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # libtpu (for the AOT rows) must not probe for a TPU here

from benchmarks import machine, report  # noqa: E402
from benchmarks.benchmark import Benchmark  # noqa: E402
from benchmarks.context import SIZES, RunContext  # noqa: E402
from benchmarks.results import Check, Row  # noqa: E402

DEFAULT_REPEATS = {"full": 3, "quick": 2, "tiny": 1}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One benchmark's rows, wall time and the exception it raised (then its only row is a failed check)."""

    description: str
    rows: list[Row]
    seconds: float
    error: str | None = None

    def to_json(self) -> dict:
        return {"description": self.description, "rows": [r.to_json() for r in self.rows],
                "seconds": self.seconds, "error": self.error}


def run_benchmark(bench: Benchmark, ctx: RunContext) -> Outcome:
    """Run one benchmark; an exception is printed and becomes a failed row, so the other benchmarks still run."""
    start = time.perf_counter()
    try:
        rows, error = bench.run(ctx), None
    except Exception as e:  # noqa: BLE001
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        rows = [Row(bench.name, None, check=Check(False, f"raised {error}"[:300]))]
    return Outcome(bench.description, rows, time.perf_counter() - start, error)


def run_suite(benchmarks: list[Benchmark], ctx: RunContext, log=print) -> dict[str, Outcome]:
    """Run ``benchmarks`` in order; their outcomes by name."""
    outcomes = {}
    for bench in benchmarks:
        if ctx.size not in bench.sizes:
            log(f"[benchmarks] {bench.name}: skipped (no {ctx.size!r} setting; it has {', '.join(bench.sizes)})")
            continue
        log(f"[benchmarks] {bench.name}: {bench.description}")
        outcomes[bench.name] = run_benchmark(bench, ctx)
        log(f"[benchmarks] {bench.name}: {outcomes[bench.name].seconds:.1f} s")
    return outcomes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about two minutes in all")
    parser.add_argument("--size", choices=SIZES, default=None, help="size class (--quick = --size=quick)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--out", default="benchmark_results.json", help="JSON output file")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 3 full, 2 quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU cores for both jax (XLA) and torch (default: all this process may use)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.quick and args.size not in (None, "quick"):
        parser.error("--quick contradicts --size")
    args.size = args.size or ("quick" if args.quick else "full")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = machine.pin_threads(args.threads)  # before any jax computation: XLA sizes its pool from affinity
    from benchmarks.registry import BENCHMARKS, select  # noqa: PLC0415 - after pinning the threads

    if args.list:
        for bench in BENCHMARKS.values():
            print(f"{bench.name:18s} {bench.description}")
        return 0
    ctx = RunContext(size=args.size, warmup=args.warmup,
                     repeats=args.repeats if args.repeats is not None else DEFAULT_REPEATS[args.size])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    outcomes = run_suite(select(args.only), ctx, log)
    settings = dict(size=ctx.size, warmup=ctx.warmup, repeats=ctx.repeats, threads=args.threads,
                    only=args.only or "all")
    document = report.record(machine.describe(cpus), settings, {k: o.to_json() for k, o in outcomes.items()})
    report.write_json(args.out, document)
    print(report.table([row for o in outcomes.values() for row in o.rows]))
    print(f"\n{document['machine']['cpu']}, {len(cpus)} of {document['machine']['cores']} cores, "
          f"load {document['machine']['load_average_1_5_15'][0]:.1f}; jax {document['machine']['versions']['jax']}, "
          f"torch {document['machine']['versions']['torch']}; {document['machine']['date']}; JSON: {args.out}")
    return 0 if document["all_checks_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
