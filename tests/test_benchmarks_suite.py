"""Smoke test of the benchmark suite (``benchmarks/``, ``python -m benchmarks.run``), not a timing test.

Every registered benchmark with a ``tiny`` setting runs once through the command line at tiny sizes; the JSON
record must have the documented structure and every correctness check (losses vs torch, greedy tokens vs HF
``generate``, pixels vs the HF processors, matmul / sum results, flat compile time) must pass. No timing is
compared with a bound. The jaxpr FLOP counter behind the TPU projection is checked against a hand count.
"""

import json
import math

import jax
import jax.numpy as jnp
import pytest

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.jaxpr_flops import matmul_flops
from benchmarks.registry import BENCHMARKS
from benchmarks.results import Row, within
from benchmarks.run import main, run_benchmark

ROW_KEYS = {"measurement", "vlm_jax", "peer", "ratio", "higher_is_better", "check", "details"}


@pytest.mark.slow
def test_tiny_suite_writes_the_record_and_every_check_passes(tmp_path, capsys):
    out = tmp_path / "results.json"
    status = main(["--size=tiny", "--repeats=1", "--warmup=0", f"--out={out}"])
    record = json.loads(out.read_text())
    assert set(record) == {"machine", "settings", "benchmarks", "all_checks_passed", "errors"}
    assert {"cpu", "cores", "cores_used", "versions", "date", "load_average_1_5_15"} <= set(record["machine"])
    assert record["machine"]["versions"]["jax"] == jax.__version__ and record["settings"]["size"] == "tiny"
    assert set(record["benchmarks"]) == {name for name, b in BENCHMARKS.items() if "tiny" in b.sizes}
    for name, result in record["benchmarks"].items():
        assert result["error"] is None, f"{name}: {result['error']}"
        assert any(row["check"] is not None for row in result["rows"]), f"{name} has no checked row"
        for row in result["rows"]:
            assert set(row) == ROW_KEYS
            assert math.isfinite(row["vlm_jax"]), (name, row["measurement"])
            if row["check"] is not None:
                assert row["check"]["passed"], (name, row["measurement"], row["check"]["detail"])
    assert record["all_checks_passed"] and status == 0
    table = capsys.readouterr().out
    assert table.startswith("| measurement") and "FAILED" not in table


def test_a_raising_benchmark_becomes_a_failed_row():
    def broken(ctx):
        raise RuntimeError("no peer")

    outcome = run_benchmark(Benchmark("broken", "raises", broken), RunContext(size="tiny"))
    assert outcome.error == "RuntimeError: no peer"
    (row,) = outcome.rows
    assert not row.check.passed and "no peer" in row.check.detail


def test_checks_and_ratios():
    assert within("d", 2e-6, 1e-5).passed and not within("d", 2e-5, 1e-5).passed
    assert "2e-05 > 1e-05" in within("d", 2e-5, 1e-5).detail
    assert Row("time", 2.0, 3.0, higher_is_better=False).ratio == 1.5  # vlm_jax 1.5x faster
    assert Row("rate", 2.0, 4.0, higher_is_better=True).ratio == 0.5
    assert Row("alone", 2.0).ratio is None


def test_matmul_flops_count_every_scan_iteration_and_the_costliest_branch():
    def loss(x, w):
        y = jax.lax.scan(lambda c, wi: (jnp.tanh(c @ wi), None), x, w)[0]
        return jax.lax.cond(y.sum() > 0, lambda: (y @ y.T).sum(), lambda: y.sum())

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=1))(jnp.ones((8, 64)), jnp.ones((5, 64, 64)))
    layer, gram = 2 * 8 * 64 * 64, 2 * 8 * 8 * 64  # one [8, 64] @ [64, 64]; one [8, 64] @ [64, 8]
    # forward + two backward matmuls per layer (5 layers) and for the Gram matrix
    assert matmul_flops(jaxpr) == 3 * (5 * layer + gram)
    assert matmul_flops(jaxpr, scans_once=True) == 3 * (layer + gram)
