"""Answer accuracy by teacher forcing: one forward pass per batch, the argmax at every answer position.

For short answers this equals greedy decoding's exact match: greedy generation emits the reference
answer (and its end token) iff every answer token is the argmax given the reference prefix. The
predicted strings (argmax tokens decoded) are scored with the benchmark's metric (EntityGrid-QA here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from vlm_jax.data.batching import SKIP_REASON, pad_batch
from vlm_jax.data.pipeline import ProcessExample
from vlm_jax.evaluate.metrics import entitygrid_scores


def answer_predictions(argmax: np.ndarray, batch: dict[str, np.ndarray]) -> list[tuple[list[int], bool]]:
    """Per row: (predicted answer token ids, all answer tokens correct). ``argmax [B, L]`` predicts t+1."""
    out = []
    for row in range(argmax.shape[0]):
        targets = np.nonzero(batch["loss_mask"][row] & batch["valid"][row])[0]
        targets = targets[targets > 0]
        predicted = argmax[row, targets - 1]
        out.append((predicted.tolist(), bool(np.all(predicted == batch["tokens"][row, targets]))))
    return out


def evaluate_entitygrid(forward: Callable[[dict[str, np.ndarray]], np.ndarray], source: Sequence[dict[str, Any]],
                        *, processor, tokenizer, template: str, batch_size: int, seq_buckets: Sequence[int],
                        stop_ids: Sequence[int] = (), progress: bool = True) -> dict[str, Any]:
    """Scores every example of an EntityGrid-QA ``source`` in order.

    ``forward(batch) -> argmax [B, L]`` (e.g. a jitted model call). Returns ``entitygrid_scores`` plus
    ``exact_match`` (all answer tokens correct) and the number of examples.
    """
    process = ProcessExample(processor, tokenizer, template, max(seq_buckets))
    rng = np.random.default_rng(0)
    records, exact = [], []
    indices = range(0, len(source), batch_size)
    for start in tqdm(indices, desc="eval", disable=not progress, leave=False):
        raws = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        examples = [process(raw, rng) for raw in raws]
        bad = [e for e in examples if SKIP_REASON in e]
        if bad:
            raise ValueError(f"evaluation example rejected: {bad[0]}")
        batch = pad_batch(examples, batch_size=batch_size, max_views=processor.max_views,
                          tile_size=processor.tile_size, seq_buckets=seq_buckets, pad_id=tokenizer.pad_id)
        argmax = np.asarray(jax.device_get(forward(batch)))
        for raw, (ids, ok) in zip(raws, answer_predictions(argmax, batch)):
            ids = [i for i in ids if i not in stop_ids]
            meta = raw["meta"]
            records.append({"task": meta["task"], "edge": bool(meta["edge"]), "prediction": tokenizer.decode(ids),
                            "answer": meta["answer"], "synonyms": list(meta.get("accepted_answers", ()))})
            exact.append(ok)
    scores = entitygrid_scores(records)
    scores["exact_match"] = float(np.mean(exact))
    scores["examples"] = len(records)
    return scores
