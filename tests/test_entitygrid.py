"""Tests for vlm_jax.data.entitygrid (EntityGrid-QA v2 generator, spec/methods.md §4.3).

The image checks find the board (bounding box of the non-white pixels, its colour the most common one) and the
entities (connected components of the other non-white pixels) in the decoded PNG, name an entity's board cell
from its centre, its colour by hue and its shape by simple geometry, and decide "cut" by whether its pixels lie
on both sides of a 2x2 cut line at S/2; they compare that with the question/answer text and the edge flag:
they test the pixels, not the generator's own labels.
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

CELL_NAMES = ["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]
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


def cut_share(start: int, stop: int, cut: float) -> float:
    """Share of the pixel extent [start, stop) on the smaller side of the line `cut` (0 when not crossed)."""
    return max(0.0, min(cut - start, stop - cut)) / (stop - start)


def find_board_and_entities(png: bytes):
    """(board box (x0, y0, side), [(cell name, colour, shape, cut share x, cut share y)])."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    size = image.shape[0]
    assert image.shape == (size, size, 3)
    painted = (image != 255).any(-1)
    rows, cols = np.nonzero(painted)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = x1 - x0
    assert y1 - y0 == side and side % 3 == 0 and painted[y0:y1, x0:x1].all(), "a filled square board"
    codes, counts = np.unique(image[painted].astype(np.int64) @ [1 << 16, 1 << 8, 1], return_counts=True)
    board = (codes[np.argmax(counts)] >> np.array([16, 8, 0])) & 255
    assert board.min() == board.max() > 128, "a light grey board"
    labels, _ = ndimage.label(painted & (image != board).any(-1), structure=np.ones((3, 3)))  # thin rings: 8-conn.
    cell, found = side // 3, []
    for k, (rs, cs) in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[rs, cs] == k
        cy, cx = (rs.start + rs.stop - 1) / 2, (cs.start + cs.stop - 1) / 2
        col, row = int((cx - x0) // cell), int((cy - y0) // cell)
        tolerance = 0.03 * size + 1.5  # jitter, star/triangle bbox off-centre, rounding
        assert abs(cx - x0 - (col + 0.5) * cell) < tolerance and abs(cy - y0 - (row + 0.5) * cell) < tolerance
        pixels = image[rs, cs][mask]
        assert (pixels == pixels[0]).all(), "entities are flat-coloured"
        found.append((CELL_NAMES[3 * row + col], colour_name(pixels[0]), shape_name(mask),
                      cut_share(cs.start, cs.stop, size / 2), cut_share(rs.start, rs.stop, size / 2)))
    return (x0, y0, side), found


def question_of(example) -> str:
    value = example["conversations"][0]["value"]
    assert value.startswith("<image>\n") and value.endswith(ANSWER_SUFFIX)
    return value[len("<image>\n"):-len(ANSWER_SUFFIX)]


def check_against_image(example, check_shapes=True):
    """Asserts the answer and edge flag agree with the board and entities seen in the image; returns the
    entities as (cell, name, cut)."""
    board, entities = find_board_and_entities(example["image"])
    question, answer = question_of(example), example["conversations"][1]["value"]
    named = []
    for cell, colour, shape, share_x, share_y in entities:
        for share in (share_x, share_y):  # a cut line misses the entity or goes through its box's middle half
            assert share == 0 or share >= 0.15, (example["id"], share)  # (a star's bottom tips are at 0.81 h)
        named.append((cell, f"{colour} {shape}" if check_shapes else colour, share_x > 0 or share_y > 0))
    if m := re.fullmatch(r"What object is located at the (\S+) of the board\?", question):
        hits = [(name, cut) for cell, name, cut in named if cell == m[1]]
        assert len(hits) == 1 and hits[0][0] == (answer if check_shapes else answer.split()[0])
        edge = hits[0][1]
    elif m := re.fullmatch(r"Where is the (\w+ \w+) located on the board\? Answer with one of: (.*)\.", question):
        assert m[2].split(", ") == CELL_NAMES
        target = m[1] if check_shapes else m[1].split()[0]
        hits = [(cell, cut) for cell, name, cut in named if name == target]
        if check_shapes:
            assert [cell for cell, _ in hits] == [answer]
        edge = [cut for cell, cut in hits if cell == answer][0]
    else:
        m = re.fullmatch(r"How many (\w+ \w+) are there in the image\? Answer with a number\.", question)
        target = m[1] if check_shapes else m[1].split()[0]
        hits = [cut for _, name, cut in named if name == target]
        if check_shapes:
            assert str(len(hits)) == answer
        edge = any(hits)
    if check_shapes:
        assert example["meta"]["edge"] == edge
    return board, named


def test_items_are_deterministic_random_access():
    a, b = EntityGridQA("train", 50, seed=3), EntityGridQA("train", 50, seed=3)
    for i in (0, 17, 49, 5):
        x, y = a[i], b[i]
        assert x["image"] == y["image"] and x["conversations"] == y["conversations"] and x["meta"] == y["meta"]
        assert a.describe(i) == {k: v for k, v in x.items() if k != "image"}
    assert a[17]["image"] == a[17]["image"]
    assert len(a) == 50 and a[3]["id"] == "entitygrid-v2-train-3-3" and a[3]["meta"]["version"] == 2
    with pytest.raises(IndexError):
        a[50]


def test_splits_and_seeds_are_disjoint():
    def images(split, seed):
        ds = EntityGridQA(split, 200, seed=seed, canvas=64)
        return [ds[i]["image"] for i in range(len(ds))]

    hashes = {}
    for code, split in enumerate(("train", "validation", "test")):
        pngs = images(split, 0)
        for png in pngs[:20]:  # the board corner encodes the split
            (x0, y0, _), _ = find_board_and_entities(png)
            assert (x0 + y0) % 3 == code
        hashes[split] = {hashlib.sha256(png).hexdigest() for png in pngs}
    train, validation, test = hashes["train"], hashes["validation"], hashes["test"]
    assert min(len(train), len(test), len(validation)) > 180  # a 64 px canvas allows a few repeats
    assert not train & test and not train & validation and not test & validation
    seed0, seed1 = EntityGridQA("train", 20, seed=0), EntityGridQA("train", 20, seed=1)
    assert all(seed0[i]["image"] != seed1[i]["image"] for i in range(20))


def test_images_match_questions_and_answers():
    ds = EntityGridQA("test", 216, seed=11, canvas=333)
    n_entities, cut_cells = collections.Counter(), collections.Counter()
    for i in range(len(ds)):
        example = ds[i]
        _, entities = check_against_image(example)
        n_entities[len(entities)] += 1
        assert len(entities) == len(example["meta"]["entities"])
        for cell, _, cut in entities:
            cut_cells[cell, cut] += 1
    assert n_entities[1] > 30 and n_entities[2] > 30
    assert all(cut_cells[cell, cut] > 5 for cell in CELL_NAMES for cut in (False, True))  # any cell cut or not


@pytest.mark.parametrize("canvas", [32, 48, 64, 100, 333, 672, 896])
def test_any_canvas_size(canvas):
    ds = EntityGridQA("train", 36 if canvas <= 100 else 12, seed=2, canvas=canvas)
    for i in range(len(ds)):
        example = ds[i]
        assert Image.open(io.BytesIO(example["image"])).size == (canvas, canvas)
        check_against_image(example, check_shapes=canvas >= 300)


def test_edge_flags_follow_the_pixels_on_small_canvases():
    """The pixel cut test at the tiny config's canvas (shapes too small to name, colours and cuts are not)."""
    ds = EntityGridQA("validation", 540, seed=4, canvas=64, n_entities=1)
    for i in range(len(ds)):
        example = ds[i]
        _, [(cell, _, cut)] = check_against_image(example, check_shapes=False)
        assert example["meta"]["edge"] == cut and example["meta"]["position"] == cell


def test_balance_over_tasks_positions_cut_states_and_answers():
    ds = EntityGridQA("train", 540 * 2, seed=5, canvas=64)
    cells, states, answers = collections.Counter(), collections.Counter(), collections.Counter()
    for i in range(len(ds)):
        meta = ds.describe(i)["meta"]
        cells[meta["task"], meta["position"], meta["edge"]] += 1
        states[meta["task"], meta["position"], meta["cut_state"]] += 1
        answers[meta["task"], meta["answer"], meta["edge"]] += 1
    assert set(cells) == {(t, p, e) for t in TASKS for p in POSITIONS for e in (False, True)}
    assert set(cells.values()) == {20}
    assert set(states.values()) == {4} and len(states) == 3 * 9 * 10  # the board does not tell the position
    for task in TASKS:
        for answer in ds.answer_options(task):
            assert answers[task, answer, True] == answers[task, answer, False]
    assert answers["counting", "1", True] == answers["counting", "2", True] == 90


def test_texts_cover_every_question_and_answer():
    texts = set(EntityGridQA.texts())
    ds = EntityGridQA("train", 60, seed=1, canvas=64)
    for i in range(len(ds)):
        example = ds.describe(i)
        assert example["conversations"][0]["value"] in texts
        assert set(example["meta"]["accepted_answers"]) <= texts
        assert example["meta"]["answer"] == example["meta"]["accepted_answers"][0]


def test_options_and_task_subsets():
    ds = EntityGridQA("train", 18, tasks=("counting",), n_entities=1, canvas=64)
    assert ds.answer_options("counting") == ("1",)
    assert {ds.describe(i)["meta"]["task"] for i in range(18)} == {"counting"}
    assert {ds.describe(i)["conversations"][1]["value"] for i in range(18)} == {"1"}
    assert len(ds.answer_options("recognition")) == 64 and ds.answer_options("position") == tuple(CELL_NAMES)
    two = EntityGridQA("train", 72, tasks=("counting", "position"), n_entities=2, canvas=64)
    assert {len(two.describe(i)["meta"]["entities"]) for i in range(72)} == {2}
    assert {two.describe(i)["meta"]["answer"] for i in range(0, 72, 2)} == {"1", "2"}


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "dev"}, "unknown split"), ({"tasks": ("ocr",)}, "tasks"), ({"tasks": ()}, "tasks"),
    ({"n_entities": 3}, "n_entities"), ({"canvas": 16}, "at least 32"), ({"entity_frac": 0.3}, "entity_frac"),
    ({"jitter_frac": -0.01}, "jitter_frac"), ({"size": -1}, "non-negative"), ({"version": 1}, "version 1"),
    ({"board_frac": 0.9}, "cannot put the cut lines"), ({"entity_frac": 0.19}, "do not fit"),
])
def test_bad_configuration_raises(kwargs, match):
    args = {"split": "train", "size": 4, "canvas": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        EntityGridQA(**args)
