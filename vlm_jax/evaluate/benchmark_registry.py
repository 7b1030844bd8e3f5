"""The benchmark registry: one object per benchmark holding its reader, prompt format and metric, used by
``vlm-jax eval``, the evaluation harness and the trainer's final evaluation alike.

  ==========  =========================  ===============  ==============================================
  benchmark   reader                     prompt           metric
  ==========  =========================  ===============  ==============================================
  entitygrid  generated from the config  verbatim         per task all / edge / non_edge / discrepancy
  textvqa     read_textvqa               short_answer     vqa_accuracy, textvqa_accuracy
  docvqa      read_docvqa                short_answer     anls
  chartqa     read_chartqa               short_answer     relaxed_accuracy
  pope        read_pope                  short_answer     pope_scores (f1 headline)
  mme         read_mme / read_mme_txt    short_answer     mme_scores (perception / cognition)
  mmbench     read_mmbench               multiple_choice  accuracy of the extracted letter, unparsed
  scienceqa   read_scienceqa (test)      multiple_choice  accuracy of the extracted letter, unparsed
  jsonl       read_llava_questions       verbatim         exact_match
  tfds        TFDS NAME:SPLIT            verbatim         exact_match
  ==========  =========================  ===============  ==============================================

Each entry also declares which of the user's inputs it reads (``data``, ``image_root``, ``size``); giving it
another one raises instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlm_jax.evaluate import benchmark_metrics as bm
from vlm_jax.evaluate.benchmark_readers import (
    BenchmarkRequest,
    Reader,
    file_reader,
    read_entitygrid,
    read_jsonl,
    read_mme_any,
    read_tfds,
)
from vlm_jax.evaluate.benchmark_records import MULTIPLE_CHOICE, SHORT_ANSWER, VERBATIM, BenchmarkRecord, PromptFormat
from vlm_jax.evaluate.benchmarks import read_chartqa, read_docvqa, read_pope, read_textvqa
from vlm_jax.evaluate.benchmarks_choice import read_mmbench, read_scienceqa

INPUTS = ("data", "image_root", "size")
FILES = ("data", "image_root")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Attributes:
      name: what ``--benchmark`` takes.
      usage: what the user passes (the CLI help shows it).
      reader: ``reader(request, prompt) -> records`` (benchmark_readers.py).
      prompt: the prompt format the reader renders questions with.
      metric: ``metric(labelled prediction rows) -> {name: value}`` (benchmark_metrics.py).
      inputs: which of ``INPUTS`` the reader uses.
    """

    name: str
    usage: str
    reader: Reader
    prompt: PromptFormat
    metric: Callable[[bm.Rows], dict[str, Any]]
    inputs: tuple[str, ...] = FILES

    def load(self, data: str | None = None, image_root: str | None = None, *, config=None,
             size: int | None = None) -> list[BenchmarkRecord]:
        """The benchmark's records; ``config`` is the run config (ml_collections)."""
        given = {"data": data, "image_root": image_root, "size": size}
        for name in INPUTS:
            if given[name] is not None and name not in self.inputs:
                raise ValueError(f"benchmark {self.name!r} does not take {name}: {self.usage}")
        return self.reader(BenchmarkRequest(self.name, data, image_root, config, size), self.prompt)

    def score(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The metric over the rows with reference answers, plus ``examples`` (rows) and ``scored`` (labelled)."""
        labelled = [r for r in rows if r["answers"]]
        metrics = self.metric(labelled) if labelled else {}
        return {**metrics, "examples": len(rows), "scored": len(labelled)}


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("entitygrid", "generated from the run config's data.eval_source (else its EntityGrid source, test "
              "split), no --data; --eval_size sets the number of examples", read_entitygrid, VERBATIM,
              bm.entitygrid_metrics, inputs=("size",)),
    Benchmark("textvqa", "--data=TextVQA_0.5.1_val.json --image_root=<train_images folder>",
              file_reader(read_textvqa), SHORT_ANSWER, bm.vqa_metrics),
    Benchmark("docvqa", "--data=<DocVQA / InfographicVQA annotation JSON> --image_root=<its image folder>",
              file_reader(read_docvqa), SHORT_ANSWER, bm.anls_metric),
    Benchmark("chartqa", "--data=test_human.json|test_augmented.json --image_root=<png folder>",
              file_reader(read_chartqa), SHORT_ANSWER, bm.relaxed_accuracy_metric),
    Benchmark("pope", "--data=<POPE question JSON lines> --image_root=<COCO val2014 folder>",
              file_reader(read_pope), SHORT_ANSWER, bm.pope_metrics),
    Benchmark("mme", "--data=<MME_Benchmark_release_version folder>, or a folder of eval_tool <subtask>.txt files "
              "with --image_root=<the release folder>", read_mme_any, SHORT_ANSWER, bm.mme_metrics),
    Benchmark("mmbench", "--data=<MMBench .tsv, images inside>", file_reader(read_mmbench, image_root=False),
              MULTIPLE_CHOICE, bm.choice_metrics, inputs=("data",)),
    Benchmark("scienceqa", "--data=problems.json (test split) --image_root=<folder of test/<pid>/image.png>",
              file_reader(read_scienceqa), MULTIPLE_CHOICE, bm.choice_metrics),
    Benchmark("jsonl", "--data=<LLaVA question .jsonl: question_id, image, text[, answers|answer]> "
              "--image_root=<image folder>", read_jsonl, VERBATIM, bm.exact_match_metric),
    Benchmark("tfds", "--data=NAME:SPLIT of a TFDS dataset in the data contract's format [--image_root=<TFDS "
              "data_dir>]", read_tfds, VERBATIM, bm.exact_match_metric),
)}


def get_benchmark(name: str) -> Benchmark:
    """The registry entry of ``name``; an unknown name raises listing the known ones."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def benchmark_help() -> str:
    """One line per benchmark, ``name: usage`` (the help of ``vlm-jax eval --benchmark``)."""
    return "\n".join(f"  {b.name}: {b.usage}" for b in BENCHMARKS.values())
