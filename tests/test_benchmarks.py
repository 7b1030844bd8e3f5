"""Benchmark readers on small fixture files written in each benchmark's published format."""

import base64
import csv
import json
import os

import pytest

from vlm_jax.evaluate.benchmarks import (
    read_chartqa,
    read_docvqa,
    read_llava_questions,
    read_mmbench,
    read_mme,
    read_mme_txt,
    read_pope,
    read_scienceqa,
    read_textvqa,
)
from vlm_jax.evaluate.metrics import mme_scores

# The two instructions of SliME Table 6 (spec §6.5), written out here as the reference.
SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def _jsonl(path, entries):
    return _write(path, "".join(json.dumps(e) + "\n" for e in entries))


def test_llava_questions(tmp_path):
    text = "What is the brand?\nReference OCR token: Sony\n" + SHORT
    path = _jsonl(tmp_path / "q.jsonl", [
        {"question_id": 34602, "image": "003a8ae2ef43b901.jpg", "text": text, "category": "ocr"},
        {"question_id": "t1", "text": "Tell a joke."}])
    first, second = read_llava_questions(path, image_root="/data/textvqa")
    assert first.question_id == 34602
    assert first.image == "/data/textvqa/003a8ae2ef43b901.jpg"
    assert first.prompt == text and first.question == text  # used verbatim
    assert first.answers == () and dict(first.extra) == {"category": "ocr"}
    assert second.image is None


def test_llava_questions_errors_name_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"question_id": 1, "text": "q"}\n\n{"question_id": 2,\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        read_llava_questions(path)
    path = _jsonl(tmp_path / "missing.jsonl", [{"question_id": 1, "image": "x.jpg"}])
    with pytest.raises(ValueError, match=r"missing\.jsonl:1: missing key\(s\) \['text'\]"):
        read_llava_questions(path)


def test_pope(tmp_path):
    path = _jsonl(tmp_path / "coco_pope_random.json", [
        {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
         "text": "Is there a snowboard in the image?", "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000310196.jpg",
         "text": "Is there a dog in the image?", "label": "No"}])
    records = read_pope(path, image_root="val2014")
    assert [r.answers for r in records] == [("yes",), ("no",)]
    assert records[0].image == os.path.join("val2014", "COCO_val2014_000000310196.jpg")
    assert records[1].prompt == "Is there a dog in the image?\n" + SHORT
    bad = _jsonl(tmp_path / "bad.json", [{"question_id": 1, "image": "a", "text": "q",
                                          "label": "maybe"}])
    with pytest.raises(ValueError, match=r"bad\.json:1: label must be"):
        read_pope(bad)


def test_textvqa(tmp_path):
    answers = ["sony"] * 9 + ["sony tv"]
    path = _write(tmp_path / "TextVQA_0.5.1_val.json", json.dumps({
        "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": [
            {"question": "what brand?", "image_id": "003a8ae2ef43b901", "question_id": 34602,
             "answers": answers, "set_name": "val", "image_classes": ["Television"]},
            {"question": "what year?", "image_id": "00b5b9a8c4b2e8d2", "question_id": 34603,
             "set_name": "test"}]}))
    first, second = read_textvqa(path, image_root="train_images")
    assert first.question_id == 34602 and first.answers == tuple(answers)
    assert first.image == os.path.join("train_images", "003a8ae2ef43b901.jpg")
    assert first.prompt == "what brand?\n" + SHORT
    assert first.extra["image_classes"] == ["Television"]
    assert second.answers == ()
    bad = _write(tmp_path / "bad.json", json.dumps({"data": [{"question": "q", "image_id": "x",
                                                              "question_id": 1},
                                                             {"image_id": "y"}]}))
    with pytest.raises(ValueError, match=r"bad\.json: data\[1\]: missing key\(s\)"):
        read_textvqa(bad)
    broken = _write(tmp_path / "broken.json", '{"data": [\n{"question": }\n]}')
    with pytest.raises(ValueError, match=r"broken\.json:2: invalid JSON"):
        read_textvqa(broken)


def test_docvqa_and_infographicvqa(tmp_path):
    doc = _write(tmp_path / "val_v1.0.json", json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 49153, "question": "What is the ratio?",
         "image": "documents/pybv0228_81.png", "docId": 14465, "answers": ["0.28"],
         "data_split": "val"}]}))
    (record,) = read_docvqa(doc, image_root="/d")
    assert record.question_id == 49153 and record.answers == ("0.28",)
    assert record.image == "/d/documents/pybv0228_81.png"
    assert record.extra == {"docId": 14465, "data_split": "val"}
    info = _write(tmp_path / "infographicVQA_test.json", json.dumps({"data": [
        {"questionId": 98313, "question": "How many?", "image_local_name": "37313.jpeg"}]}))
    (record,) = read_docvqa(info)
    assert record.image == "37313.jpeg" and record.answers == ()


def test_chartqa(tmp_path):
    path = _write(tmp_path / "test_human.json", json.dumps([
        {"imgname": "41699051005347.png", "query": "What is the peak value?", "label": "68"},
        {"imgname": "multi_col_1.png", "query": "Which year?", "label": 2019}]))
    first, second = read_chartqa(path, image_root="png")
    assert (first.question_id, second.question_id) == ("test_human/0", "test_human/1")
    assert first.image == os.path.join("png", "41699051005347.png")
    assert first.answers == ("68",) and second.answers == ("2019",)
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_chartqa(_write(tmp_path / "x.json", "{}"))


def _mme_release(root):
    _write(root / "artwork/images/10002.jpg", "")
    _write(root / "artwork/questions_answers_YN/10002.txt",
           "Is this artwork created by Donatello? Please answer yes or no.\tYes\n"
           "Is this artwork created by Pisanello? Please answer yes or no.\tNo\n")
    _write(root / "OCR/0001.png", "")
    _write(root / "OCR/0001.txt", "Is the word in the logo \"high\"?\tYes \r\n"
                                  "Is the word in the logo \"low\"?\tNo\n\n")
    _write(root / "eval_tool/readme.txt", "not a subtask")


def test_mme_release_folder(tmp_path):
    _mme_release(tmp_path)
    records = read_mme(str(tmp_path))
    assert [r.question_id for r in records] == [
        "artwork/10002.jpg/0", "artwork/10002.jpg/1", "OCR/0001.png/0", "OCR/0001.png/1"]
    assert records[0].image == os.path.join(str(tmp_path), "artwork", "images", "10002.jpg")
    assert records[2].image == os.path.join(str(tmp_path), "OCR", "0001.png")
    assert [r.answers for r in records] == [("yes",), ("no",), ("yes",), ("no",)]
    assert records[1].prompt == ("Is this artwork created by Pisanello? Please answer yes or no."
                                 "\n" + SHORT)
    # Records feed mme_scores: artwork both right (acc 1, acc+ 1 -> 200), OCR one right (50).
    replies = ["Yes", "No", "Yes", "Yes"]
    scored = mme_scores([{"category": r.extra["category"], "image": r.extra["image_name"],
                          "prediction": p, "answer": r.answers[0]}
                         for r, p in zip(records, replies)])
    assert scored["perception"] == pytest.approx(250.0)


def test_mme_release_folder_errors(tmp_path):
    _write(tmp_path / "count/5.txt", "How many? Please answer yes or no.\tYes\nBad line\n")
    with pytest.raises(FileNotFoundError, match="no image 5"):
        read_mme(str(tmp_path))
    _write(tmp_path / "count/5.jpg", "")
    with pytest.raises(ValueError, match=r"5\.txt:2: expected 'question\tanswer'"):
        read_mme(str(tmp_path))
    with pytest.raises(ValueError, match="no MME subtask folder"):
        read_mme(str(tmp_path / "count"))


def test_mme_eval_tool_txt(tmp_path):
    _write(tmp_path / "results/existence.txt",
           "000000006040.jpg\tIs there a train? Please answer yes or no.\tYes\tYes\n"
           "000000006040.jpg\tIs there a bed? Please answer yes or no.\tNo\tYes\n")
    _write(tmp_path / "results/posters.txt",
           "tt0048545.jpg\tIs this movie directed by Nicholas Ray?\tYes\n")
    records = read_mme_txt(str(tmp_path / "results"), image_root="/mme")
    assert [r.question_id for r in records] == [
        "existence/000000006040.jpg/0", "existence/000000006040.jpg/1", "posters/tt0048545.jpg/0"]
    assert records[1].extra == {"category": "existence", "image_name": "000000006040.jpg",
                                "prediction": "Yes"}
    assert records[0].image == "/mme/existence/000000006040.jpg"
    assert records[2].image == "/mme/posters/images/tt0048545.jpg"
    _write(tmp_path / "bad/color.txt", "a.jpg\tIs it red?\tMaybe\n")
    with pytest.raises(ValueError, match=r"color\.txt:1: the answer must be Yes or No"):
        read_mme_txt(str(tmp_path / "bad"))


def _tsv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerows(rows)
    return str(path)


def test_mmbench_tsv(tmp_path):
    image = bytes(range(256)) * 2
    encoded = base64.b64encode(image).decode()
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image",
              "split"]
    path = _tsv(tmp_path / "MMBench_DEV_EN.tsv", [
        header,
        ["241", "Which animal is shown?", "nan", "cat", "dog", "bird", "", "B", "object", encoded,
         "dev"],
        ["1000241", "Which animal is shown?", "A zoo photo.\nTaken in 2020.", "dog", "bird", "cat",
         "", "A", "object", "241", "dev"]])
    first, second = read_mmbench(path)
    assert first.question_id == 241 and first.image == image
    assert first.options == ("cat", "dog", "bird") and first.answers == ("B",)
    assert first.prompt == f"Which animal is shown?\nA. cat\nB. dog\nC. bird\n{LETTER}"
    assert first.extra == {"hint": "nan", "category": "object", "split": "dev"}
    assert second.image == image  # the image column refers to row index 241
    assert second.prompt == ("A zoo photo.\nTaken in 2020.\nWhich animal is shown?\n"
                             f"A. dog\nB. bird\nC. cat\n{LETTER}")
    bad = _tsv(tmp_path / "bad.tsv", [header, ["1", "q", "", "x", "y", "", "", "A", "c", encoded,
                                               "dev"],
                                      ["2", "q", "", "x", "y", "", "", "A", "c", "not base64!",
                                       "dev"]])
    with pytest.raises(ValueError, match=r"bad\.tsv:3: 'image' is neither base64"):
        read_mmbench(bad)
    with pytest.raises(ValueError, match=r"nohead\.tsv:1: header lacks"):
        read_mmbench(_tsv(tmp_path / "nohead.tsv", [["index", "question"], ["1", "q"]]))


def test_scienceqa_problems(tmp_path):
    problems = {
        "5": {"question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1,
              "hint": "", "image": None, "split": "test", "subject": "natural science"},
        "12": {"question": "Which solution has more particles?",
               "choices": ["neither", "Solution A", "Solution B"], "answer": 2,
               "hint": "The diagram shows two samples.", "image": "image.png", "split": "test",
               "subject": "natural science"},
        "20": {"question": "q", "choices": ["x", "y"], "answer": 0, "hint": "", "image": None,
               "split": "train"}}
    path = _write(tmp_path / "problems.json", json.dumps(problems))
    records = read_scienceqa(path, image_root="/sqa")
    assert [r.question_id for r in records] == ["5", "12"]
    assert records[0].image is None and records[0].answers == ("B",)
    assert records[0].prompt == f"Which is a mammal?\nA. frog\nB. whale\n{LETTER}"
    assert records[1].image == os.path.join("/sqa", "test", "12", "image.png")
    assert records[1].answers == ("C",)
    assert records[1].options == ("neither", "Solution A", "Solution B")
    assert records[1].prompt.startswith("Context: The diagram shows two samples.\nWhich solution")
    assert records[1].extra["subject"] == "natural science"
    assert [r.question_id for r in read_scienceqa(path, images_only=True)] == ["12"]
    assert len(read_scienceqa(path, split=None)) == 3
    problems["7"] = {"question": "q", "choices": ["x"], "answer": 3, "split": "test"}
    bad = _write(tmp_path / "bad.json", json.dumps(problems))
    with pytest.raises(ValueError, match=r"problem '7': 'answer' 3 is not an index"):
        read_scienceqa(bad)
