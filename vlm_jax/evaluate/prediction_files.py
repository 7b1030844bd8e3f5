"""The files of an evaluation directory: per-host prediction shards (append-only JSON lines), the merged
predictions and the run description, with the checks that make a resumed evaluation exact.

Layout of ``OUT``::

    OUT/run.json                            what was evaluated (benchmark, checkpoint, max_new_tokens, ...)
    OUT/shards/predictions-<i>-of-<n>.jsonl  host i of n appends one line per answered question, per batch
    OUT/predictions.jsonl                    every question once, in benchmark order (written by process 0)
    OUT/metrics.json                         the summary (written by process 0)

A host killed while writing leaves at most one partial last line in its shard: readers ignore a last
line without its newline and the next run cuts it off before appending. Question ids are compared by
type and value (``1`` and ``"1"`` are different ids, as in the benchmark files).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

SHARD_DIR = "shards"
MERGED_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"


def question_key(question_id: Any) -> Hashable:
    """Identity of a question id across JSON round trips: (type name, value)."""
    return type(question_id).__name__, question_id


def shard_path(out_dir: str, shard_index: int, shard_count: int) -> str:
    """The prediction file of host ``shard_index`` of ``shard_count``."""
    return os.path.join(out_dir, SHARD_DIR, f"predictions-{shard_index:05d}-of-{shard_count:05d}.jsonl")


def shard_files(out_dir: str) -> list[str]:
    """Every host's prediction file in ``out_dir`` (from any earlier host count too), sorted."""
    return sorted(glob.glob(os.path.join(out_dir, SHARD_DIR, "predictions-*-of-*.jsonl")))


def read_rows(path: str) -> list[dict[str, Any]]:
    """The complete lines of a prediction file; a last line without newline (cut by a kill) is ignored,
    any other unreadable line raises ValueError naming the file and line."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: invalid JSON ({e.msg})") from None
    return rows


def answered_keys(out_dir: str) -> set[Hashable]:
    """``question_key`` of every question with a prediction in some shard of ``out_dir``."""
    return {question_key(row["question_id"]) for path in shard_files(out_dir) for row in read_rows(path)}


def cut_partial_line(path: str) -> None:
    """Remove a trailing partial line so that appended lines start on a fresh line."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        complete = data.rfind(b"\n") + 1
        if complete != len(data):
            f.truncate(complete)


def append_rows(f, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append ``rows`` as JSON lines in one write and flush them to the OS."""
    f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    f.flush()
    os.fsync(f.fileno())


def merge_predictions(out_dir: str, question_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """Exactly one row per question of ``question_ids``, in that order, from all shards of ``out_dir``.

    Raises ValueError on a question answered twice, a prediction for a question not in the benchmark
    (``out_dir`` belongs to another evaluation) or a question without prediction.
    """
    found: dict[Hashable, tuple[str, dict[str, Any]]] = {}
    for path in shard_files(out_dir):
        for row in read_rows(path):
            key = question_key(row["question_id"])
            if key in found:
                raise ValueError(f"question_id {row['question_id']!r} is answered twice: in {found[key][0]} "
                                 f"and {path}")
            found[key] = (path, row)
    expected = {question_key(q) for q in question_ids}
    unknown = [(path, row["question_id"]) for key, (path, row) in found.items() if key not in expected]
    if unknown:
        raise ValueError(f"{len(unknown)} prediction(s) for questions not in this benchmark, e.g. "
                         f"{unknown[0][1]!r} in {unknown[0][0]}: {out_dir} holds another evaluation")
    missing = [q for q in question_ids if question_key(q) not in found]
    if missing:
        raise ValueError(f"{len(missing)} question(s) have no prediction in {out_dir}, e.g. {missing[0]!r}")
    return [found[question_key(q)][1] for q in question_ids]


def write_json_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see a partial file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def check_run(out_dir: str, run: Mapping[str, Any], *, write: bool) -> None:
    """Raise ValueError when ``out_dir`` holds an evaluation described differently from ``run``;
    otherwise record ``run`` there (when ``write``, i.e. on process 0)."""
    path = os.path.join(out_dir, RUN_FILE)
    run = json.loads(json.dumps(dict(run)))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        changed = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
        if changed:
            raise ValueError(f"{out_dir} holds an evaluation with other settings "
                             f"({', '.join(f'{k}: {previous.get(k)!r} != {run.get(k)!r}' for k in changed)}); "
                             "use another output directory")
    elif write:
        os.makedirs(out_dir, exist_ok=True)
        write_json_atomically(path, json.dumps(run, indent=1) + "\n")
