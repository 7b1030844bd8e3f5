"""Tests of the Grain pipeline (vlm_jax/data/pipeline.py, batching.py) with fake processor/tokenizer."""

import itertools
import json
import logging

import numpy as np
import pytest
from pipeline_fakes import PAD, FakeProcessor, FakeTokenizer, fake_tokenize, png_bytes, raw_example, row_ids

from vlm_jax.data.batching import choose_bucket
from vlm_jax.data.pipeline import make_dataset
from vlm_jax.data.sources import ExampleError

BUCKETS = [16, 24, 40]


class ListSource:
    """Raw examples from a list; entries that are ExampleError instances are raised on access."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(self.items[i], ExampleError):
            raise self.items[i]
        return self.items[i]


def build(source, **overrides):
    kwargs = dict(processor=FakeProcessor(), tokenizer=FakeTokenizer(), template="fake",
                  batch_size=2, seq_buckets=BUCKETS, seed=0, num_epochs=1, shard_index=0,
                  shard_count=1, tokenize_fn=fake_tokenize)
    kwargs.update(overrides)
    return make_dataset(source, **kwargs)


def batches_of(ds, n=None):
    return list(itertools.islice(iter(ds), n))


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def all_ids(batches):
    return [i for b in batches for i in row_ids(b) if i is not None]


def pixels_by_id(batches):
    return {i: (b["pixels"][r], b["tile_mask"][r]) for b in batches for r, i in enumerate(row_ids(b))
            if i is not None}


def test_same_seed_same_batches_other_seed_other_order():
    source = ListSource([raw_example(k) for k in range(12)])
    first, again = batches_of(build(source, seed=3)), batches_of(build(source, seed=3))
    assert_same_batches(first, again)
    assert len(first) == 6 and sorted(all_ids(first)) == sorted(f"ex{k}" for k in range(12))
    other = batches_of(build(source, seed=4))
    assert sorted(all_ids(other)) == sorted(all_ids(first))
    assert all_ids(other) != all_ids(first)
    # Epochs are reshuffled, and examples repeat forever with num_epochs=None.
    endless = batches_of(build(source, seed=3, num_epochs=None), 12)
    assert all_ids(endless[:6]) == all_ids(first) and all_ids(endless[6:]) != all_ids(first)


def test_host_slices_are_disjoint_cover_the_epoch_and_keep_element_randomness():
    source = ListSource([raw_example(k, size=(20, 30)) for k in range(10)])
    whole = pixels_by_id(batches_of(build(source, batch_size=1)))
    parts = [batches_of(build(source, batch_size=1, shard_index=i, shard_count=2)) for i in range(2)]
    ids = [set(all_ids(p)) for p in parts]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == set(whole) and len(whole) == 10
    for part in parts:
        for example_id, (pixels, _) in pixels_by_id(part).items():
            np.testing.assert_array_equal(pixels, whole[example_id][0])


def test_bad_examples_are_skipped_counted_and_do_not_disturb_the_others(caplog):
    good = [raw_example(k, size=(12 + k, 30)) for k in range(8)]
    bad = {
        1: raw_example(101, image=b"\x89PNG not really an image"),
        3: {**raw_example(103), "conversations": []},
        4: raw_example(104, words=60),
        6: ExampleError("missing_image", "ex106", "img/106.png: No such file"),
    }
    mixed = [bad.get(i, example) for i, example in enumerate(good)]
    caplog.set_level(logging.WARNING, logger="vlm_jax.data.batching")
    it = iter(build(ListSource(mixed), batch_size=1))
    seen = pixels_by_id(list(it))
    assert set(seen) == {f"ex{k}" for k in range(8) if k not in bad}
    assert it.stats.skipped == {"bad_image": 1, "bad_conversation": 1, "too_long": 1, "missing_image": 1}
    assert it.stats.examples == 4 and it.stats.batches == 4 and it.stats.total_skipped == 4
    assert "ex101" in caplog.text and "ex106" in caplog.text
    # The good examples got exactly the pixels (incl. RNG jitter) they get in the clean data set.
    clean = pixels_by_id(batches_of(build(ListSource(good), batch_size=1)))
    for example_id, (pixels, mask) in seen.items():
        np.testing.assert_array_equal(pixels, clean[example_id][0])
        np.testing.assert_array_equal(mask, clean[example_id][1])


def test_fixed_shapes_bucket_choice_and_padding():
    examples = [raw_example(0, size=(10, 10), words=1), raw_example(1, size=(30, 30), words=2),
                raw_example(2, image=None, words=8), raw_example(3, size=(10, 30), words=14),
                raw_example(4, size=(30, 10), words=0)]
    lengths = {e["id"]: len(fake_tokenize(FakeTokenizer(), "", e["conversations"],
                                          0 if e["image"] is None else 2 * n)[0])
               for e, n in zip(examples, [1, 5, 0, 3, 3])}
    n_views = {"ex0": 1, "ex1": 5, "ex2": 0, "ex3": 3, "ex4": 3}
    batches = batches_of(build(ListSource(examples), shuffle=False, drop_remainder=False))
    assert len(batches) == 3
    for batch in batches:
        ids = row_ids(batch)
        present = [i for i in ids if i is not None]
        length = batch["tokens"].shape[1]
        assert length == min(b for b in BUCKETS if b >= max(lengths[i] for i in present))
        assert batch["pixels"].shape == (2, 5, 8, 8, 3) and batch["pixels"].dtype == np.float32
        for key, shape, dtype in [("tile_mask", (2, 5), bool), ("grid", (2, 2), np.int32),
                                  ("orig_size", (2, 2), np.int32), ("tokens", (2, length), np.int32),
                                  ("loss_mask", (2, length), bool), ("image_slots", (2, length), bool),
                                  ("prompt_mask", (2, length), bool), ("valid", (2, length), bool)]:
            assert batch[key].shape == shape and batch[key].dtype == dtype, key
        for row, example_id in enumerate(ids):
            n = n_views.get(example_id, 0)
            assert batch["tile_mask"][row].tolist() == [True] * n + [False] * (5 - n)
            assert not batch["pixels"][row, n:].any()
            valid = batch["valid"][row]
            assert valid.sum() == lengths.get(example_id, 0) and valid[:valid.sum()].all()
            assert (batch["tokens"][row][~valid] == PAD).all()
            assert not (batch["loss_mask"][row] | batch["image_slots"][row])[~valid].any()
            assert batch["image_slots"][row].sum() == 2 * n
    by_id = {i: (b, r) for b in batches for r, i in enumerate(row_ids(b))}
    batch, row = by_id["ex2"]  # text only
    assert batch["orig_size"][row].tolist() == [0, 0] and batch["grid"][row].tolist() == [1, 1]
    batch, row = by_id["ex3"]
    assert batch["orig_size"][row].tolist() == [10, 30] and batch["grid"][row].tolist() == [1, 2]
    assert row_ids(batches[-1]) == ["ex4", None]  # the partial batch is padded with an empty row
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        choose_bucket(41, BUCKETS)


def test_iterator_state_restores_the_exact_continuation():
    items = [raw_example(k, size=(12 + k % 3 * 8, 20)) for k in range(5)]
    items[2] = raw_example(2, image=b"garbage")
    ds = build(ListSource(items), num_epochs=None, batch_size=2)
    it = iter(ds)
    batches_of(it, 3)
    state = json.loads(json.dumps(it.get_state()))  # must survive a JSON checkpoint
    stats_at_save = it.stats.as_dict()
    continuation = batches_of(it, 4)
    restored = iter(ds)
    restored.set_state(state)
    assert restored.stats.as_dict() == stats_at_save and stats_at_save["skipped/bad_image"] >= 1
    assert_same_batches(batches_of(restored, 4), continuation)
    assert restored.stats.as_dict() == it.stats.as_dict()


def test_worker_processes_give_the_same_batches_and_counts():
    items = [raw_example(k, size=(12, 12 + k * 4)) for k in range(6)]
    items[3] = raw_example(3, image=png_bytes(4, 4, 0)[:20])
    single = iter(build(ListSource(items), worker_count=0))
    expected = list(single)
    multi = iter(build(ListSource(items), worker_count=2))
    try:
        assert_same_batches(list(multi), expected)
        assert multi.stats == single.stats and multi.stats.skipped == {"bad_image": 1}
    finally:
        multi.close()


def test_bad_arguments_fail_early():
    source = ListSource([raw_example(0)])
    with pytest.raises(ValueError, match="strictly increasing"):
        build(source, seq_buckets=[32, 16])
    with pytest.raises(ValueError, match="shard_index"):
        build(source, shard_index=2, shard_count=2)


def test_with_the_real_template_tokenizer(tmp_path):
    from vlm_jax.data.templates import template_specials, template_texts, tokenize_conversation
    from vlm_jax.data.tokenizer import Tokenizer, train_tokenizer

    examples = [raw_example(k, size=(12, 12 + 10 * k)) for k in range(3)] + [raw_example(3, image=None)]
    symbols = ["<image>"] + [s for s in template_specials() if s not in ("<unk>", "<s>", "</s>", "<pad>")]
    texts = template_texts() + [turn["value"] for e in examples for turn in e["conversations"]]
    tok = Tokenizer(train_tokenizer(texts, str(tmp_path / "tok.model"), 512, symbols))
    batches = batches_of(build(ListSource(examples), processor=FakeProcessor(), tokenizer=tok,
                               template="vicuna_v1", seq_buckets=[128, 256], batch_size=1,
                               shuffle=False, tokenize_fn=tokenize_conversation))
    assert len(batches) == 4
    for example, batch, n_views in zip(examples, batches, [1, 3, 3, 0]):
        expected = tokenize_conversation(tok, "vicuna_v1", example["conversations"], 2 * n_views)
        valid = batch["valid"][0]
        for key in ("tokens", "loss_mask", "image_slots", "prompt_mask"):
            np.testing.assert_array_equal(batch[key][0][valid], getattr(expected, key), err_msg=key)
        assert batch["tile_mask"][0].sum() == n_views and (batch["tokens"][0][~valid] == tok.pad_id).all()
