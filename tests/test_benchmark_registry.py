"""The benchmark registry (vlm_jax/evaluate/benchmark_registry.py): lookups, refused inputs, the entry's prompt
format reaching the records, and the CLI help generated from it. The metrics per benchmark are checked end to
end in test_eval_harness.py, the readers in test_benchmarks.py."""

import dataclasses
import json
import os

import pytest

from vlm_jax import cli
from vlm_jax.evaluate.benchmark_records import MULTIPLE_CHOICE, SHORT_ANSWER, VERBATIM
from vlm_jax.evaluate.benchmark_registry import BENCHMARKS, get_benchmark

# The two instructions of SliME Table 6 (spec §6.5), written out here as the reference.
SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
NAMES = ["entitygrid", "textvqa", "docvqa", "chartqa", "pope", "mme", "mmbench", "scienceqa", "jsonl", "tfds"]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def test_registry_lists_every_benchmark_and_refuses_unknown_names():
    assert list(BENCHMARKS) == NAMES
    with pytest.raises(ValueError, match="unknown benchmark 'vqa'; known: " + ", ".join(NAMES)):
        get_benchmark("vqa")


def test_prompt_formats_render_llava_layouts():
    assert SHORT_ANSWER("What brand?") == f"What brand?\n{SHORT}"
    assert MULTIPLE_CHOICE("Which?", ["cat", "dog"], "A photo.") == f"A photo.\nWhich?\nA. cat\nB. dog\n{LETTER}"
    assert VERBATIM("Tell a joke.") == "Tell a joke."
    assert {name: b.prompt for name, b in BENCHMARKS.items()} == {
        "entitygrid": VERBATIM, "textvqa": SHORT_ANSWER, "docvqa": SHORT_ANSWER, "chartqa": SHORT_ANSWER,
        "pope": SHORT_ANSWER, "mme": SHORT_ANSWER, "mmbench": MULTIPLE_CHOICE, "scienceqa": MULTIPLE_CHOICE,
        "jsonl": VERBATIM, "tfds": VERBATIM}


def test_the_entry_prompt_format_is_what_its_records_carry(tmp_path):
    path = _write(tmp_path / "pope.jsonl", json.dumps({"question_id": 1, "image": "p.jpg", "text": "Is there a cat?",
                                                       "label": "yes"}) + "\n")
    (record,) = get_benchmark("pope").load(path, "images")
    assert record.prompt == f"Is there a cat?\n{SHORT}" and record.image == os.path.join("images", "p.jpg")
    plain = dataclasses.replace(get_benchmark("pope"), prompt=VERBATIM)
    assert plain.load(path, "images")[0].prompt == "Is there a cat?"
    problems = {"7": {"question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1, "hint": "Zoo.",
                      "image": None, "split": "test"}}
    path = _write(tmp_path / "problems.json", json.dumps(problems))
    (record,) = get_benchmark("scienceqa").load(path)
    assert record.prompt == f"Context: Zoo.\nWhich is a mammal?\nA. frog\nB. whale\n{LETTER}"
    assert record.answers == ("B",)


def test_inputs_a_benchmark_does_not_read_are_refused(tmp_path):
    path = _write(tmp_path / "pope.jsonl", "")
    with pytest.raises(ValueError, match=r"benchmark 'pope' does not take size: --data=<POPE"):
        get_benchmark("pope").load(path, size=3)
    with pytest.raises(ValueError, match=r"benchmark 'mmbench' does not take image_root: --data=<MMBench"):
        get_benchmark("mmbench").load(path, "images")
    with pytest.raises(ValueError, match=r"benchmark 'entitygrid' does not take data: generated from the run config"):
        get_benchmark("entitygrid").load(path)
    with pytest.raises(ValueError, match=r"benchmark 'tfds' needs its data \(--data=NAME:SPLIT\)"):
        get_benchmark("tfds").load()
    _write(tmp_path / "mme/OCR/0001.txt", "Is the word high?\tYes\n")
    with pytest.raises(ValueError, match=r"is the MME release folder, which holds the images: --image_root is only"):
        get_benchmark("mme").load(str(tmp_path / "mme"), "images")


def test_cli_benchmark_help_comes_from_the_registry():
    help_text = cli.FLAGS["benchmark"].help
    for benchmark in BENCHMARKS.values():
        assert f"{benchmark.name}: {benchmark.usage}" in help_text
