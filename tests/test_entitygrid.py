"""Tests for vlm_jax.data.entitygrid (EntityGrid-QA generator, spec/methods.md §4.3).

The image checks find entities in the decoded PNG (connected components of non-white pixels), name
their colour by hue and their shape by simple geometry, and compare with the question/answer text:
they test the pixels, not the generator's own meta labels.
"""

import collections
import colorsys
import hashlib
import io
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vlm_jax.data.entitygrid import POSITIONS, TASKS, EntityGridQA

ANCHOR_NAMES = ["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]
ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."


def colour_name(rgb) -> str:
    """Human colour name of a saturated RGB triple, by hue."""
    hue, _, value = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    hue *= 360
    if value < 0.25:
        return "black"
    for name, upper in (("red", 15), ("orange", 40), ("yellow", 65), ("green", 150), ("cyan", 200),
                        ("blue", 250), ("purple", 300), ("red", 361)):
        if hue < upper:
            return name
    raise AssertionError(rgb)


def shape_name(mask: np.ndarray) -> str:
    """Shape of a filled blob cropped to its bounding box, from fill ratio and profile."""
    h, w = mask.shape
    fill = mask.mean()
    if w / h > 1.08:
        return "hexagon"
    if not mask[h // 2, w // 2]:
        return "ring"
    if fill > 0.95:
        return "square"
    if 0.72 < fill < 0.83:
        return "circle"
    widths = mask.sum(axis=1)
    if np.argmax(widths) > 0.85 * h:
        return "triangle"
    if fill < 0.45:
        return "star"
    return "cross" if mask[0].mean() > 0.2 else "diamond"


def find_entities(png: bytes):
    """[(anchor name, colour, shape, straddles a 2x2 cut line)] of the blobs in the image."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    size = image.shape[0]
    assert image.shape == (size, size, 3)
    labels, n = ndimage.label((image != 255).any(-1))
    found = []
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[rows, cols] == k
        cy, cx = (rows.start + rows.stop - 1) / 2, (cols.start + cols.stop - 1) / 2
        col, row = round(cx / size * 4) - 1, round(cy / size * 4) - 1
        tolerance = 0.04 * size + 1.5  # jitter, star/triangle bbox off-centre, rounding
        assert abs(cx - (col + 1) * size / 4) < tolerance and abs(cy - (row + 1) * size / 4) < tolerance
        colours = image[rows, cols][mask]
        assert (colours == colours[0]).all(), "entities are flat-coloured"
        straddles = rows.start < size / 2 < rows.stop or cols.start < size / 2 < cols.stop
        found.append((ANCHOR_NAMES[3 * row + col], colour_name(colours[0]), shape_name(mask), straddles))
    return found


def question_of(example) -> str:
    value = example["conversations"][0]["value"]
    assert value.startswith("<image>\n") and value.endswith(ANSWER_SUFFIX)
    return value[len("<image>\n"):-len(ANSWER_SUFFIX)]


def check_against_image(example, check_shapes=True):
    """Asserts the answer and edge flag agree with the entities seen in the image."""
    entities = find_entities(example["image"])
    question, answer = question_of(example), example["conversations"][1]["value"]
    named = [(pos, f"{colour} {shape}" if check_shapes else colour, cut) for pos, colour, shape, cut in entities]
    if m := re.fullmatch(r"What object is located at the (\S+) of the image\?", question):
        hits = [(name, cut) for pos, name, cut in named if pos == m[1]]
        assert len(hits) == 1 and hits[0][0] == (answer if check_shapes else answer.split()[0])
        edge = hits[0][1]
    elif m := re.fullmatch(r"Where is the (\w+ \w+) located in the image\? Answer with one of: (.*)\.", question):
        assert m[2].split(", ") == ANCHOR_NAMES
        target = m[1] if check_shapes else m[1].split()[0]
        hits = [(pos, cut) for pos, name, cut in named if name == target]
        if check_shapes:
            assert [pos for pos, _ in hits] == [answer]
        edge = [cut for pos, cut in hits if pos == answer][0]
    else:
        m = re.fullmatch(r"How many (\w+ \w+) are there in the image\? Answer with a number\.", question)
        target = m[1] if check_shapes else m[1].split()[0]
        hits = [cut for _, name, cut in named if name == target]
        if check_shapes:
            assert str(len(hits)) == answer
        edge = any(hits)
    if check_shapes:
        assert example["meta"]["edge"] == edge
    return entities


def test_items_are_deterministic_random_access():
    a, b = EntityGridQA("train", 50, seed=3), EntityGridQA("train", 50, seed=3)
    for i in (0, 17, 49, 5):
        x, y = a[i], b[i]
        assert x["image"] == y["image"] and x["conversations"] == y["conversations"] and x["meta"] == y["meta"]
    assert a[17]["image"] == a[17]["image"]
    assert len(a) == 50
    with pytest.raises(IndexError):
        a[50]


def test_splits_and_seeds_are_disjoint():
    def hashes(split, seed):
        ds = EntityGridQA(split, 200, seed=seed, canvas=64)
        return {hashlib.sha256(ds[i]["image"]).hexdigest() for i in range(len(ds))}

    train, test, validation = hashes("train", 0), hashes("test", 0), hashes("validation", 0)
    assert min(len(train), len(test), len(validation)) > 180  # a 64 px canvas allows a few repeats
    assert not train & test and not train & validation and not test & validation
    seed0, seed1 = EntityGridQA("train", 20, seed=0), EntityGridQA("train", 20, seed=1)
    assert all(seed0[i]["image"] != seed1[i]["image"] for i in range(20))


def test_images_match_questions_and_answers():
    ds = EntityGridQA("test", 108, seed=11)
    n_entities = collections.Counter()
    for i in range(len(ds)):
        example = ds[i]
        entities = check_against_image(example)
        n_entities[len(entities)] += 1
        assert len(entities) == len(example["meta"]["entities"])
        for position, _, _, cut in entities:
            assert cut == (position in {"top", "left", "center", "right", "bottom"})
    assert n_entities[1] > 10 and n_entities[2] > 10


@pytest.mark.parametrize("canvas", [48, 100, 333, 672])
def test_any_canvas_size(canvas):
    ds = EntityGridQA("train", 27, seed=2, canvas=canvas)
    for i in range(len(ds)):
        example = ds[i]
        assert Image.open(io.BytesIO(example["image"])).size == (canvas, canvas)
        check_against_image(example, check_shapes=canvas >= 300)


def test_edge_flags_per_position():
    ds = EntityGridQA("train", 27, seed=0, n_entities=1)
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        assert meta["edge"] == (meta["position"] in {"top", "left", "center", "right", "bottom"})
        assert meta["edge"] == (meta["position"] not in {"top-left", "top-right", "bottom-left", "bottom-right"})


def test_balance_over_tasks_positions_and_answers():
    ds = EntityGridQA("train", 9 * 3 * 40, seed=5, canvas=64)
    cells, answers = collections.Counter(), collections.defaultdict(collections.Counter)
    for i in range(len(ds)):
        example = ds[i]
        task = example["meta"]["task"]
        cells[task, example["meta"]["position"]] += 1
        answers[task][example["conversations"][1]["value"]] += 1
    assert set(cells) == {(t, p) for t in TASKS for p in POSITIONS} and set(cells.values()) == {40}
    assert set(answers["position"].values()) == {40}
    recognition = answers["recognition"]
    assert set(recognition) <= set(ds.answer_options("recognition")) and len(recognition) > 55
    assert max(recognition.values()) < 5 * 360 / 64
    counts = answers["counting"]
    assert set(counts) == {"1", "2"} and 0.35 < counts["2"] / 360 < 0.55


def test_texts_cover_every_question_and_answer():
    texts = set(EntityGridQA.texts())
    ds = EntityGridQA("train", 60, seed=1, canvas=64)
    for i in range(len(ds)):
        example = ds[i]
        assert example["conversations"][0]["value"] in texts
        assert set(example["meta"]["accepted_answers"]) <= texts
        assert example["meta"]["answer"] == example["meta"]["accepted_answers"][0]


def test_options_and_task_subsets():
    ds = EntityGridQA("train", 18, tasks=("counting",), n_entities=1, canvas=64)
    assert ds.answer_options("counting") == ("1",)
    assert {ds[i]["meta"]["task"] for i in range(18)} == {"counting"}
    assert {ds[i]["conversations"][1]["value"] for i in range(18)} == {"1"}
    assert len(ds.answer_options("recognition")) == 64 and ds.answer_options("position") == tuple(ANCHOR_NAMES)


@pytest.mark.parametrize("kwargs", [
    {"split": "dev"}, {"tasks": ("ocr",)}, {"tasks": ()}, {"n_entities": 3}, {"canvas": 16},
    {"entity_frac": 0.6}, {"jitter_frac": 0.0}, {"size": -1},
])
def test_bad_configuration_raises(kwargs):
    args = {"split": "train", "size": 4, **kwargs}
    with pytest.raises(ValueError):
        EntityGridQA(**args)
