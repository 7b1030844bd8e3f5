"""Tests of the raw-example sources, the record format and the LLaVA -> ArrayRecord converter."""

import json
import os
import sys

import pytest
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordWriter
from pipeline_fakes import png_bytes

from vlm_jax.data import convert
from vlm_jax.data.records import decode_example, encode_example
from vlm_jax.data.sources import ArrayRecordSource, ExampleError, LlavaJsonSource, TfdsSource, tfds_features


def conversation(k):
    return [{"from": "human", "value": f"<image>\nWhat is in picture {k}?"},
            {"from": "gpt", "value": f"Thing number {k}."}]


@pytest.fixture
def llava_dir(tmp_path):
    """7 entries: images 0..6 except 2 and 5 exist on disk; entry 4 is text-only."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    entries = []
    for k in range(7):
        entry = {"id": f"s{k}", "image": f"sub/{k}.png", "conversations": conversation(k)}
        if k == 4:
            del entry["image"]
        elif k not in (2, 5):
            (root / f"sub/{k}.png").write_bytes(png_bytes(5 + k, 7, seed=k))
        entries.append(entry)
    entries[6]["source_dataset"] = "coco"
    (tmp_path / "data.json").write_text(json.dumps(entries))
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    return tmp_path


def readable(source):
    """All examples of a source that can be read, keyed by id."""
    out = {}
    for i in range(len(source)):
        try:
            example = source[i]
        except ExampleError:
            continue
        out[example["id"]] = example
    return out


def test_llava_json_source_reads_lazily_and_reports_missing_images(llava_dir):
    source = LlavaJsonSource(llava_dir / "data.json", llava_dir / "images")
    assert len(source) == 7
    example = source[3]
    assert example["image"] == (llava_dir / "images/sub/3.png").read_bytes()
    assert example["conversations"] == conversation(3) and example["id"] == "s3"
    assert source[4]["image"] is None
    assert source[6]["meta"] == {"source_dataset": "coco"}
    with pytest.raises(ExampleError) as info:
        source[2]
    assert info.value.reason == "missing_image" and info.value.example_id == "s2"
    jsonl = LlavaJsonSource(llava_dir / "data.jsonl", llava_dir / "images")
    assert readable(jsonl) == readable(source)


def test_llava_json_source_rejects_a_file_that_is_not_a_list(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"id": 1}))
    with pytest.raises(ValueError, match="list of example objects"):
        LlavaJsonSource(tmp_path / "bad.json", tmp_path)


def test_record_round_trip_and_foreign_bytes():
    example = {"id": "a", "image": b"\x00\x01\xff", "conversations": conversation(1), "meta": {"x": [1, 2]}}
    assert decode_example(encode_example(example)) == example
    assert decode_example(encode_example({**example, "image": None}))["image"] is None
    with pytest.raises(ValueError, match="not a vlm_jax.raw_example.v1 record"):
        decode_example(json.dumps(example["conversations"]).encode())
    with pytest.raises(TypeError, match="bytes or None"):
        encode_example({**example, "image": "path.png"})


def test_convert_round_trip_equals_the_json_source(llava_dir, caplog):
    out_dir = llava_dir / "shards"
    paths, skipped = convert.convert_llava_json_with_report(
        llava_dir / "data.json", llava_dir / "images", out_dir, num_shards=3, progress=False)
    assert [os.path.basename(p) for p in paths] == [
        f"data.array_record-{i:05d}-of-00003" for i in range(3)]
    assert sorted(os.listdir(out_dir)) == sorted(os.path.basename(p) for p in paths)
    assert [(s["id"], s["reason"]) for s in skipped] == [("s2", "missing_image"), ("s5", "missing_image")]
    assert "s5" in convert.summarize_skipped(skipped)
    json_source = LlavaJsonSource(llava_dir / "data.json", llava_dir / "images")
    records = ArrayRecordSource(paths)
    expected = [json_source[i] for i in (0, 1, 3, 4, 6)]
    assert len(records) == 5 and [records[i] for i in range(5)] == expected
    again = convert.convert_llava_json(llava_dir / "data.json", llava_dir / "images", out_dir,
                                       num_shards=3, progress=False)
    assert again == paths and [ArrayRecordSource(again)[i] for i in range(5)] == expected


def test_convert_is_atomic_when_writing_fails(llava_dir, monkeypatch):
    calls = []

    def failing_encode(example):
        calls.append(example["id"])
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return encode_example(example)

    monkeypatch.setattr(convert, "encode_example", failing_encode)
    out_dir = llava_dir / "shards"
    with pytest.raises(RuntimeError, match="disk full"):
        convert.convert_llava_json(llava_dir / "data.json", llava_dir / "images", out_dir,
                                   num_shards=2, progress=False)
    assert len(calls) == 4 and os.listdir(out_dir) == []


def test_array_record_source_flags_a_corrupt_record(tmp_path):
    path = str(tmp_path / "x.array_record")
    writer = ArrayRecordWriter(path, "group_size:1")
    writer.write(encode_example({"id": "ok", "image": None, "conversations": []}))
    writer.write(b"\x93not msgpack of ours")
    writer.close()
    source = ArrayRecordSource(path)
    assert source[0]["id"] == "ok"
    with pytest.raises(ExampleError) as info:
        source[1]
    assert info.value.reason == "bad_record"
    with pytest.raises(FileNotFoundError):
        ArrayRecordSource([path, str(tmp_path / "absent")])


class TinyVlmQa(tfds.core.GeneratorBasedBuilder):
    """A 6-example TFDS data set in the :func:`tfds_features` schema (example 2 is text-only)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds_features())

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(4)), "test": self._generate_examples(range(4, 6))}

    def _generate_examples(self, ks):
        for k in ks:
            yield f"t{k}", {"id": f"t{k}", "image": b"" if k == 2 else png_bytes(6, 6, seed=k),
                            "conversations": json.dumps(conversation(k)), "meta": json.dumps({"k": k})}


def test_tfds_source_reads_an_array_record_tfds_dataset_without_tensorflow(tmp_path):
    TinyVlmQa(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    train = TfdsSource("tiny_vlm_qa", "train", str(tmp_path))
    assert len(train) == 4 and len(TfdsSource("tiny_vlm_qa", "test", str(tmp_path))) == 2
    by_id = {train[i]["id"]: train[i] for i in range(len(train))}
    assert sorted(by_id) == ["t0", "t1", "t2", "t3"]
    for k in range(4):
        example = by_id[f"t{k}"]
        assert example["image"] == (None if k == 2 else png_bytes(6, 6, seed=k))
        assert example["conversations"] == conversation(k) and example["meta"] == {"k": k}
    assert "tensorflow" not in sys.modules
    assert any("train.array_record-" in f for f in os.listdir(tmp_path / "tiny_vlm_qa/1.0.0"))


def test_tfds_benchmark_records(tmp_path):
    from vlm_jax.evaluate.benchmark_loading import load_benchmark

    TinyVlmQa(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    records = {r.question_id: r for r in load_benchmark("tfds", "tiny_vlm_qa:test", str(tmp_path))}
    assert sorted(records) == ["t4", "t5"]
    for k in (4, 5):
        turns = conversation(k)
        assert records[f"t{k}"].question == turns[0]["value"].replace("<image>", "").strip()
        assert records[f"t{k}"].answers == (turns[1]["value"],)
        assert records[f"t{k}"].image == png_bytes(6, 6, seed=k)
    with pytest.raises(ValueError, match="NAME:SPLIT"):
        load_benchmark("tfds", "tiny_vlm_qa", str(tmp_path))
