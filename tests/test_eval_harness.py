"""The evaluation harness (``vlm-jax eval``) on a tiny trained run: host sharding with padding, merge without
duplicates or drops, resumption, every benchmark kind end to end, and the trainer's final evaluation."""

import base64
import csv
import io
import json
import math
import os

import jax
import numpy as np
import pytest
from PIL import Image
from test_train import tiny_train_config

from vlm_jax import cli, sharding
from vlm_jax.evaluate.benchmark_loading import load_benchmark
from vlm_jax.evaluate.benchmark_scoring import score_predictions
from vlm_jax.evaluate.generate_text import generate_text
from vlm_jax.evaluate.generation_setup import InferenceBundle, load_for_generation, run_config
from vlm_jax.evaluate.harness import evaluate_checkpoint, evaluate_records, predict_shard
from vlm_jax.evaluate.metrics import (
    anls,
    entitygrid_scores,
    extract_choice,
    mme_scores,
    pope_scores,
    relaxed_accuracy,
    textvqa_accuracy,
    vqa_accuracy,
)
from vlm_jax.evaluate.prediction_files import merge_predictions, read_rows, shard_path
from vlm_jax.train.loop import EVAL_MAX_NEW_TOKENS, train

BATCH, NEW_TOKENS = 4, 4
ENTITYGRID_KEYS = {"all", "edge", "non_edge", "discrepancy"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step tiny run whose final evaluation answers 6 EntityGrid-QA test questions."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_train_config(steps=2)
    config.data.eval_source = {"kind": "entitygrid", "split": "test", "size": 6, "seed": 0, "canvas": 32}
    scores = train(config, workdir)
    return workdir, scores, load_for_generation(workdir)


@pytest.fixture(scope="module")
def grid13(run, tmp_path_factory):
    """13 EntityGrid-QA records and their predictions from one uninterrupted single-host run."""
    workdir, _, bundle = run
    records = load_benchmark("entitygrid", config=run_config(workdir), size=13)
    out = str(tmp_path_factory.mktemp("one_host"))
    assert predict_shard(bundle, records, out, shard_index=0, shard_count=1, batch_size=BATCH,
                         max_new_tokens=NEW_TOKENS, progress=False) == 13
    return records, read_rows(shard_path(out, 0, 1))


def _same(a, b):
    """Equal trees of metrics: floats within 1e-12 (NaN equals NaN), everything else exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


@pytest.mark.slow
def test_trainer_final_evaluation_is_greedy_generation_through_the_harness(run, tmp_path):
    workdir, scores, bundle = run
    for task in ("position", "recognition", "counting"):
        assert ENTITYGRID_KEYS <= scores[task].keys()
    assert scores["examples"] == scores["scored"] == 6 and 0 <= scores["overall"] <= 1
    rows = read_rows(os.path.join(workdir, "eval", "predictions.jsonl"))
    assert len(rows) == 6
    expected = entitygrid_scores([{"task": r["extra"]["task"], "edge": r["extra"]["edge"],
                                   "prediction": r["prediction"], "answer": r["answers"][0],
                                   "synonyms": r["answers"][1:]} for r in rows])
    assert _same({**expected, "benchmark": "entitygrid", "examples": 6, "scored": 6}, scores)

    # the same answers from the restored checkpoint (vlm-jax eval) and one by one from generate_text
    summary = evaluate_checkpoint(workdir, "entitygrid", str(tmp_path), batch_size=BATCH,
                                  max_new_tokens=EVAL_MAX_NEW_TOKENS, progress=False)
    assert _same(summary, scores)
    assert [r["prediction"] for r in read_rows(str(tmp_path / "predictions.jsonl"))] == [r["prediction"] for r in rows]
    records = load_benchmark("entitygrid", config=run_config(workdir))
    with sharding.use_mesh(bundle.mesh):
        for record, row in list(zip(records, rows))[:2]:
            alone = generate_text(bundle.model, bundle.tokenizer, bundle.processor, record.image, record.prompt,
                                  bundle.template, max_new_tokens=EVAL_MAX_NEW_TOKENS)
            assert alone == row["prediction"]


def test_two_hosts_answer_every_question_exactly_once(run, grid13, tmp_path):
    _, _, bundle = run
    records, uninterrupted = grid13
    written = []
    for shard, devices in ((0, jax.devices()[:4]), (1, jax.devices()[4:])):  # one 4-device sub-mesh per "host"
        host = InferenceBundle(bundle.model, bundle.tokenizer, bundle.processor, bundle.template,
                               sharding.make_mesh(data=1, fsdp=-1, devices=devices))
        written.append(predict_shard(host, records, str(tmp_path), shard_index=shard, shard_count=2,
                                     batch_size=BATCH, max_new_tokens=NEW_TOKENS, progress=False))
    assert written == [7, 6]  # 2 batches each: the second host's last batch has 2 padding rows, dropped
    assert [len(read_rows(shard_path(str(tmp_path), s, 2))) for s in (0, 1)] == [7, 6]
    merged = merge_predictions(str(tmp_path), [r.question_id for r in records])
    assert [r["question_id"] for r in merged] == [r.question_id for r in records]
    assert merged == uninterrupted

    def no_model():
        raise AssertionError("a finished evaluation must not load the model")

    summary = evaluate_records(records, "entitygrid", str(tmp_path), no_model, batch_size=BATCH,
                               max_new_tokens=NEW_TOKENS, progress=False)
    assert summary["examples"] == 13
    assert [r["question_id"] for r in read_rows(str(tmp_path / "predictions.jsonl"))] == [
        r.question_id for r in records]

    with pytest.raises(ValueError, match="not in this benchmark"):
        merge_predictions(str(tmp_path), [r.question_id for r in records[1:]])
    with open(shard_path(str(tmp_path), 1, 2), "a") as f:  # a duplicated answer is an error
        f.write(json.dumps(merged[0]) + "\n")
    with pytest.raises(ValueError, match="answered twice"):
        merge_predictions(str(tmp_path), [r.question_id for r in records])


def test_a_killed_evaluation_resumes_where_it_stopped(run, grid13, tmp_path):
    _, _, bundle = run
    records, uninterrupted = grid13
    out = str(tmp_path)
    predict_shard(bundle, records[:6], out, shard_index=0, shard_count=1, batch_size=BATCH,
                  max_new_tokens=NEW_TOKENS, progress=False)
    path = shard_path(out, 0, 1)
    with open(path, "a") as f:
        f.write('{"question_id": "entitygrid-test-0-6", "predic')  # killed in the middle of a write
    calls = []
    summary = evaluate_records(records, "entitygrid", out, lambda: calls.append(1) or bundle, batch_size=BATCH,
                               max_new_tokens=NEW_TOKENS, progress=False)
    assert calls == [1] and read_rows(path) == uninterrupted  # 6 kept + 7 answered, the partial line cut
    assert read_rows(os.path.join(out, "predictions.jsonl")) == uninterrupted
    assert _same(summary, {"benchmark": "entitygrid", **score_predictions("entitygrid", uninterrupted)})
    with open(os.path.join(out, "metrics.json")) as f:
        assert _same(json.load(f), summary)
    with pytest.raises(ValueError, match="max_new_tokens: 4 != 8"):
        evaluate_records(records, "entitygrid", out, lambda: bundle, batch_size=BATCH, max_new_tokens=8)


def _png(path=None, seed=0):
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    if path is None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)
    return str(path)


def _dump(path, document):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def _fixture(kind, root):
    """(data path, image root) of a tiny benchmark file in the published format (as tests/test_benchmarks.py)."""
    images = root / "images"
    if kind == "textvqa":
        _png(images / "a1.jpg", 1)
        _png(images / "a2.jpg", 2)
        return _dump(root / "val.json", {"data": [
            {"question_id": 1, "question": "what brand?", "image_id": "a1", "answers": ["sony"] * 9 + ["tv"]},
            {"question_id": 2, "question": "what year?", "image_id": "a2", "answers": ["1999"] * 10},
            {"question_id": 3, "question": "what?", "image_id": "a1"}]}), str(images)
    if kind == "docvqa":
        _png(images / "documents/d.png")
        document = {"data": [
            {"questionId": 7, "question": "What ratio?", "image": "documents/d.png", "answers": ["0.28"]},
            {"questionId": 8, "question": "Total?", "image": "documents/d.png", "answers": ["12", "twelve"]}]}
        return _dump(root / "val.json", document), str(images)
    if kind == "chartqa":
        _png(images / "c.png")
        return _dump(root / "test_human.json", [{"imgname": "c.png", "query": "Peak?", "label": "68"},
                                                {"imgname": "c.png", "query": "Year?", "label": 2019}]), str(images)
    if kind == "pope":
        _png(images / "p.jpg")
        lines = [{"question_id": i, "image": "p.jpg", "text": f"Is there a {w}?", "label": label}
                 for i, (w, label) in enumerate([("cat", "yes"), ("dog", "no"), ("car", "no")])]
        return _dump(root / "pope.jsonl", "".join(json.dumps(line) + "\n" for line in lines)), str(images)
    if kind == "mme":
        _png(root / "mme/artwork/images/10002.jpg")
        _dump(root / "mme/artwork/questions_answers_YN/10002.txt", "Is it by Donatello?\tYes\nIs it by Dali?\tNo\n")
        _png(root / "mme/OCR/0001.png", 3)
        _dump(root / "mme/OCR/0001.txt", "Is the word high?\tYes\nIs the word low?\tNo\n")
        return str(root / "mme"), None
    if kind == "mmbench":
        path = root / "mmbench.tsv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["index", "question", "hint", "A", "B", "C", "answer", "category", "image"])
            writer.writerow(["0", "Which animal?", "nan", "cat", "dog", "", "B", "object",
                             base64.b64encode(_png()).decode()])
            writer.writerow(["1", "Which colour?", "A photo.", "red", "blue", "green", "C", "attribute", "0"])
        return str(path), None
    if kind == "scienceqa":
        _png(images / "test/12/image.png")
        return _dump(root / "problems.json", {
            "5": {"question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1, "hint": "",
                  "image": None, "split": "test"},
            "12": {"question": "Which is more?", "choices": ["A", "B", "neither"], "answer": 2, "hint": "Look.",
                   "image": "image.png", "split": "test"}}), str(images)
    _png(images / "q.png")  # jsonl: LLaVA questions, one with reference answers, one text-only without
    lines = [{"question_id": "a", "image": "q.png", "text": "Colour?", "answers": ["red", "Red!"]},
             {"question_id": "b", "text": "Say hi.", "answer": "hi"},
             {"question_id": "c", "text": "Unlabelled."}]
    return _dump(root / "q.jsonl", "".join(json.dumps(line) + "\n" for line in lines)), str(images)


def _expected(kind, records, predictions):
    """The benchmark's metric recomputed from the records and predictions with the public metric functions."""
    pairs = [(r, p) for r, p in zip(records, predictions) if r.answers]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    if kind == "textvqa":
        out = {"vqa_accuracy": mean([vqa_accuracy(p, list(r.answers)) for r, p in pairs]),
               "textvqa_accuracy": mean([textvqa_accuracy(p, list(r.answers)) for r, p in pairs])}
    elif kind == "docvqa":
        out = {"anls": mean([anls(p, list(r.answers)) for r, p in pairs])}
    elif kind == "chartqa":
        out = {"relaxed_accuracy": mean([relaxed_accuracy(p, r.answers[0]) for r, p in pairs])}
    elif kind == "pope":
        out = pope_scores([p for _, p in pairs], [r.answers[0] for r, _ in pairs])
    elif kind == "mme":
        out = mme_scores([{"category": r.extra["category"], "image": r.extra["image_name"], "prediction": p,
                           "answer": r.answers[0]} for r, p in pairs])
    elif kind in ("mmbench", "scienceqa"):
        choices = [extract_choice(p, list(r.options)) for r, p in pairs]
        out = {"accuracy": mean([c == r.answers[0] for c, (r, _) in zip(choices, pairs)]),
               "unparsed": mean([c is None for c in choices])}
    else:
        out = {"exact_match": mean([p.strip().lower() in {a.lower() for a in r.answers} for r, p in pairs])}
    return {"benchmark": kind, **out, "examples": len(records), "scored": len(pairs)}


@pytest.mark.parametrize("kind", ["textvqa", "docvqa", "chartqa", "pope", "mme", "mmbench", "scienceqa", "jsonl"])
def test_every_benchmark_end_to_end(run, tmp_path, kind):
    _, _, bundle = run
    data, image_root = _fixture(kind, tmp_path)
    records = load_benchmark(kind, data, image_root)
    out = str(tmp_path / "out")
    summary = evaluate_records(records, kind, out, lambda: bundle, batch_size=BATCH, max_new_tokens=NEW_TOKENS,
                               progress=False)
    rows = read_rows(os.path.join(out, "predictions.jsonl"))
    assert [r["question_id"] for r in rows] == [r.question_id for r in records]
    assert all(isinstance(r["prediction"], str) for r in rows)
    assert _same(summary, _expected(kind, records, [r["prediction"] for r in rows]))
    with open(os.path.join(out, "metrics.json")) as f:
        assert _same(json.load(f), summary)


def test_cli_eval_prints_and_writes_the_summary(run, tmp_path, capsys):
    workdir, _, _ = run
    data, image_root = _fixture("pope", tmp_path)
    argv = cli.FLAGS(["vlm-jax", "eval", f"--checkpoint={workdir}", "--benchmark=pope", f"--data={data}",
                      f"--image_root={image_root}", f"--out={tmp_path / 'out'}", f"--max_new_tokens={NEW_TOKENS}",
                      f"--eval_batch_size={BATCH}"])
    try:
        cli.main(argv)
    finally:
        cli.FLAGS.unparse_flags()
    printed = json.loads(capsys.readouterr().out)
    with open(tmp_path / "out" / "metrics.json") as f:
        assert printed == json.load(f)
    assert printed["examples"] == 3 and {"f1", "accuracy", "yes_ratio"} <= printed.keys()
    assert len(read_rows(str(tmp_path / "out" / "predictions.jsonl"))) == 3


def test_scores_of_known_predictions():
    def row(prediction, answers, options=(), **extra):
        return {"prediction": prediction, "answers": list(answers), "options": list(options), "extra": extra}

    textvqa = score_predictions("textvqa", [row("Sony", ["sony"] * 10), row("tv", ["sony"] * 8 + ["tv"] * 2),
                                            row("x", [])])
    assert textvqa == pytest.approx({"vqa_accuracy": (1 + 0.6) / 2, "textvqa_accuracy": (1 + 0.6) / 2,
                                     "examples": 3, "scored": 2})
    assert score_predictions("chartqa", [row("70", ["68"]), row("80", ["68"])])["relaxed_accuracy"] == 0.5
    assert score_predictions("docvqa", [row("0.28", ["0.28"]), row("zzzz", ["0.28"])])["anls"] == 0.5
    choice = score_predictions("mmbench", [row("B", ["B"], ["x", "y"]), row("The answer is A", ["B"], ["x", "y"]),
                                           row("none", ["A"], ["x", "y"])])
    assert choice == pytest.approx({"accuracy": 1 / 3, "unparsed": 1 / 3, "examples": 3, "scored": 3})
    assert score_predictions("pope", [row("Yes", ["yes"]), row("No", ["yes"])])["recall"] == 0.5
    grid = score_predictions("entitygrid", [row("Top Left", ["top-left", "upper left"], task="position", edge=False),
                                            row("two", ["2"], task="counting", edge=True)])
    assert grid["position"]["non_edge"] == 1 and grid["counting"]["edge"] == 1 and grid["overall"] == 1
    assert score_predictions("jsonl", [row(" Hi ", ["hi"]), row("no", ["yes"])])["exact_match"] == 0.5
    assert score_predictions("jsonl", [row("free text", [])]) == {"examples": 1, "scored": 0}
    with pytest.raises(ValueError, match="unknown benchmark 'vqa'"):
        score_predictions("vqa", [])


def test_bad_input_fails_early(run, tmp_path):
    workdir, _, bundle = run
    with pytest.raises(ValueError, match="needs its data file"):
        load_benchmark("pope")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_benchmark("pope", str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="generated from the run config"):
        load_benchmark("entitygrid", str(tmp_path))
    records = load_benchmark("entitygrid", config=run_config(workdir), size=2)
    with pytest.raises(ValueError, match="duplicate question_id"):
        evaluate_records(records + records[:1], "entitygrid", str(tmp_path), lambda: bundle, batch_size=BATCH,
                         max_new_tokens=NEW_TOKENS)
    with pytest.raises(ValueError, match="shard_index"):
        predict_shard(bundle, records, str(tmp_path), shard_index=2, shard_count=2, batch_size=BATCH,
                      max_new_tokens=NEW_TOKENS)
