"""LLaVA JSON/JSONL + image folder -> ArrayRecord shards (DESIGN.md "Data": ship converters).

Random reads from ArrayRecord are what Grain's ``MapDataset.source`` wants; shards are written with
``group_size:1`` so every record is individually seekable. The record format is ``records.py``.
"""

import collections
import logging
import os
from typing import Any

import tqdm
from array_record.python.array_record_module import ArrayRecordWriter

from vlm_jax.data.records import encode_example
from vlm_jax.data.sources import ExampleError, LlavaJsonSource

log = logging.getLogger(__name__)


def shard_paths(out_dir: str, stem: str, num_shards: int) -> list[str]:
    """TFDS-style shard names ``{stem}.array_record-{i:05d}-of-{n:05d}`` in ``out_dir``."""
    return [os.path.join(out_dir, f"{stem}.array_record-{i:05d}-of-{num_shards:05d}")
            for i in range(num_shards)]


def _contiguous_ranges(n: int, num_shards: int) -> list[range]:
    """Splits ``range(n)`` into ``num_shards`` contiguous ranges whose sizes differ by at most 1."""
    bounds = [n * i // num_shards for i in range(num_shards + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def summarize_skipped(skipped: list[dict[str, Any]]) -> str:
    """One line per reason: count and the first few example ids."""
    by_reason = collections.defaultdict(list)
    for item in skipped:
        by_reason[item["reason"]].append(item["id"])
    lines = [f"skipped {len(skipped)} examples"]
    for reason, ids in sorted(by_reason.items()):
        lines.append(f"  {reason}: {len(ids)} (e.g. {', '.join(ids[:5])})")
    return "\n".join(lines)


def convert_llava_json(json_path: str, image_root: str, out_dir: str, *, num_shards: int,
                       progress: bool = True) -> list[str]:
    """Writes the examples of a LLaVA conversation file as ``num_shards`` ArrayRecord shards.

    Source order is kept: shard k holds the k-th contiguous block of source indices, so reading the
    returned shards in order (``ArrayRecordSource(paths)``) gives the source minus skipped examples.
    Examples whose image is missing/unreadable are skipped and a summary (count per reason, with
    ids) is logged; :func:`convert_llava_json_with_report` also returns every skipped example.
    Output is atomic: shards are written under temporary names and renamed only when all are done.

    Returns:
      The shard paths, in order.
    """
    return convert_llava_json_with_report(json_path, image_root, out_dir, num_shards=num_shards,
                                          progress=progress)[0]


def convert_llava_json_with_report(json_path: str, image_root: str, out_dir: str, *,
                                   num_shards: int, progress: bool = True
                                   ) -> tuple[list[str], list[dict[str, Any]]]:
    """:func:`convert_llava_json` that also returns the skipped examples ``[{id, reason, message}]``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    source = LlavaJsonSource(json_path, image_root)
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(json_path))[0]
    final_paths = shard_paths(out_dir, stem, num_shards)
    temp_paths = [os.path.join(out_dir, f".tmp.{os.getpid()}.{os.path.basename(p)}")
                  for p in final_paths]
    skipped: list[dict[str, Any]] = []
    bar = tqdm.tqdm(total=len(source), desc=f"convert {stem}", unit="ex", disable=not progress)
    try:
        for indices, temp_path in zip(_contiguous_ranges(len(source), num_shards), temp_paths):
            writer = ArrayRecordWriter(temp_path, "group_size:1")
            try:
                for index in indices:
                    try:
                        writer.write(encode_example(source[index]))
                    except ExampleError as e:
                        skipped.append({"id": e.example_id, "reason": e.reason, "message": str(e)})
                    bar.update(1)
            finally:
                writer.close()
        for temp_path, final_path in zip(temp_paths, final_paths):
            os.replace(temp_path, final_path)
    finally:
        bar.close()
        for temp_path in temp_paths:
            if os.path.exists(temp_path):
                os.remove(temp_path)
    if skipped:
        log.warning("convert %s: %s", json_path, summarize_skipped(skipped))
    log.info("convert %s: wrote %d examples to %d shards in %s", json_path,
             len(source) - len(skipped), num_shards, out_dir)
    return final_paths, skipped
