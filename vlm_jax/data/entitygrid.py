"""EntityGrid-QA v2: synthetic fragmentation benchmark of HiRes-LLaVA, prior-balanced (spec/methods.md §4.3).

An S x S white canvas (S = 2 t for slice size t, so a 2 x 2 slicing cuts it at x = S/2 and y = S/2) shows a grey
3 x 3 board holding one or two entities in distinct cells; the board moves so that the cut lines can pass
through any cell (data/entitygrid_board.py). Entities are procedurally drawn "<colour> <shape>" categories
(data/shapes.py). Each example asks one question of one of three tasks (texts: data/entitygrid_text.py):
recognition (board position -> category), position (category -> board position), counting (category -> "1"/"2").
Sizes: board 0.6 S (cells 0.2 S), entities 0.13 S. The spec's about 0.3 S entities fitted v1's fixed anchors; the
cut line must be able to sweep the board from its first to its last column, so board + 2 cells <= S.

Edge flag: an entity is *cut* when a cut line passes through the middle half of it (into 2 or 4 pieces); the
example is an edge question when the asked entity is cut (counting: when any counted entity is cut).

Prior balance by construction (project [inferred] design; the paper's is unknown). Questions come in twins:
for task index ``i mod #tasks`` and ``j = i div #tasks``, examples j = 2 m (non-edge) and j = 2 m + 1 (edge)
share their question text and answer: board position ``m mod 9``, a category from a shuffled cycle over all
categories (one permutation per 64 twins, drawn from the seed), and for counting the answer ("1" for even
``m div 9``, "2" for odd, when ``n_entities`` allows two). The twins differ only in the cut state (where the
cut lines cross, or that they miss): the ``(m div 18) mod 5``-th of the five states that cut (edge twin) or
leave whole (non-edge twin) the asked cell; for counting "2" the second counted entity is put in a cell the
non-edge twin leaves whole. Hence, for every task, the edge and non-edge questions are the same multiset of
(question, answer); each cut state occurs equally often for every position (the board does not tell the
answer); any prefix of ``180 * #tasks`` examples is exactly balanced over tasks x positions x cut states x
counting answers, and of ``128 * #tasks`` over categories. Anything a model could learn without the image
scores the same on edge and non-edge questions.

Everything else comes from the example's own seed stream (seed, split, index): the board offset among those
realising the cut state (its corner also encodes the split, so no image is shared between splits), entity
jitter, the number of entities when it is free (drawn from ``n_entities``), the second entity's cell, and its
category (recognition: any; position and counting "1": another one, so the answer is unique).
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from vlm_jax.data.entitygrid_board import BOARD_COLOUR, CUT_STATES, BoardGeometry, cuts_through
from vlm_jax.data.entitygrid_text import (
    CATEGORIES,
    COUNTING_QUESTION,
    POSITION_QUESTION,
    POSITIONS,
    RECOGNITION_QUESTION,
    TASKS,
    accepted_answers,
    category_synonyms,
    entitygrid_texts,
    human_turn,
)
from vlm_jax.data.shapes import BACKGROUND, PALETTE, draw_shape

__all__ = ["CATEGORIES", "POSITIONS", "SPLIT_CODES", "TASKS", "VERSION", "EntityGridQA", "accepted_answers",
           "category_synonyms", "human_turn"]

VERSION = 2  # v1 (fixed anchors, edge decided by the position name) is no longer generated
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}

# Images are palette PNGs (index 0 = background, 1 = board): >10x faster to encode than RGB, same pixels after
# decoding with PIL's .convert("RGB").
_PALETTE_INDEX = {name: k + 2 for k, name in enumerate(PALETTE)}
_PNG_PALETTE = [c for rgb in (BACKGROUND, BOARD_COLOUR, *PALETTE.values()) for c in rgb]
_STATES_BY_CUT = {(p, edge): tuple(k for k in CUT_STATES if (cuts_through(p, k) > 0) == edge)
                  for p in range(len(POSITIONS)) for edge in (False, True)}


class EntityGridQA:
    """Random-access EntityGrid-QA v2 examples, fully determined by (seed, split, index) (module docstring).

    Args:
      split: "train", "validation" or "test".
      size: number of examples (len).
      seed: base seed.
      canvas: side S of the square image in pixels (S = 2 t for slice size t); >= 32.
      n_entities: 1, 2, or (1, 2) for a uniform draw per example (counting "2" always draws two).
      tasks: subset of TASKS, cycled over the index.
      entity_frac: entity side as a fraction of S.
      board_frac: board side as a fraction of S (cells of floor(board_frac * S / 3) px); the cut lines must be
        able to reach every cell, which needs about board_frac <= 0.6.
      jitter_frac: largest entity offset from its cell centre per axis, as a fraction of S (>= 0).
      version: the data version; only 2 is generated.
    Items are raw examples of the data contract: {"id", "image" (PNG bytes), "conversations" (one human question
    with "<image>", one gpt answer), "meta"}; ``describe(index)`` gives the same without the image.
    Raises ValueError for a configuration that cannot be generated (naming the conflict).
    """

    def __init__(self, split: str, size: int, seed: int = 0, canvas: int = 896,
                 n_entities: int | tuple[int, ...] = (1, 2), tasks: tuple[str, ...] = TASKS,
                 entity_frac: float = 0.13, board_frac: float = 0.6, jitter_frac: float = 0.01,
                 version: int = VERSION):
        if version != VERSION:
            raise ValueError(f"EntityGrid-QA version {version!r} is not generated (only v{VERSION}: prior-balanced)")
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_CODES)}")
        if size < 0 or seed < 0:
            raise ValueError(f"size and seed must be non-negative, got size={size}, seed={seed}")
        if canvas < 32:
            raise ValueError(f"canvas must be at least 32 pixels, got {canvas}")
        counts = (n_entities,) if isinstance(n_entities, int) else tuple(n_entities)
        if not counts or any(n not in (1, 2) for n in counts):
            raise ValueError(f"n_entities must be 1, 2 or a tuple of them, got {n_entities!r}")
        tasks = tuple(tasks)
        if not tasks or len(set(tasks)) != len(tasks) or any(t not in TASKS for t in tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {tasks!r}")
        if not 0 < entity_frac < board_frac / 3 or not 0 < board_frac <= 1 or jitter_frac < 0:
            raise ValueError("need 0 < entity_frac < board_frac / 3, 0 < board_frac <= 1 and jitter_frac >= 0, got "
                             f"entity_frac={entity_frac}, board_frac={board_frac}, jitter_frac={jitter_frac}")
        self.split, self.size, self.seed, self.canvas = split, size, seed, canvas
        self.entity_counts, self.tasks = counts, tasks
        self.geometry = BoardGeometry(canvas, cell=int(board_frac * canvas / 3),
                                      half_side=max(1, round(entity_frac * canvas / 2)),
                                      max_jitter=int(jitter_frac * canvas))

    def __len__(self) -> int:
        return self.size

    def answer_options(self, task: str) -> tuple[str, ...]:
        """All answers `task` can produce with this configuration."""
        if task == "recognition":
            return CATEGORIES
        if task == "position":
            return POSITIONS
        if task == "counting":
            return ("1", "2") if 2 in self.entity_counts else ("1",)
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")

    @staticmethod
    def texts() -> list[str]:
        """Every question (as human turn), answer and answer synonym the generator can emit."""
        return entitygrid_texts()

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(SPLIT_CODES[self.split], *key)))

    def _twin_category(self, task: str, twin: int) -> str:
        """The asked category of twin pair `twin`: a shuffled cycle over all categories."""
        block, k = divmod(twin, len(CATEGORIES))
        return CATEGORIES[self._rng(1, TASKS.index(task), block).permutation(len(CATEGORIES))[k]]

    def _entity(self, category: str, cell: int, cut_state: int, box: tuple[int, int, int, int]) -> dict:
        colour, shape = category.split(" ", 1)
        cuts = cuts_through(cell, cut_state)
        return {"category": category, "colour": colour, "shape": shape, "position": POSITIONS[cell],
                "edge": cuts > 0, "cuts": cuts, "box": box}

    def describe(self, index: int) -> dict:
        """The example at `index` without its image: {"id", "conversations", "meta"}."""
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for EntityGridQA of size {self.size}")
        task = self.tasks[index % len(self.tasks)]
        j = index // len(self.tasks)
        edge, twin = bool(j % 2), j // 2
        cell, digit = twin % len(POSITIONS), twin // len(POSITIONS)
        count = 2 if task == "counting" and 2 in self.entity_counts and digit % 2 else 1
        cut_states = _STATES_BY_CUT[cell, edge]
        cut_state = cut_states[(digit // 2) % len(cut_states)]
        category = self._twin_category(task, twin)

        rng = self._rng(0, index)
        x, y = self.geometry.sample(cut_state, SPLIT_CODES[self.split], rng)
        cells, categories = [cell], [category]
        if count == 2 or self.entity_counts[rng.integers(len(self.entity_counts))] == 2:
            whole = count == 2 and not edge  # the second counted entity must stay whole too
            free = [c for c in range(len(POSITIONS)) if c != cell and not (whole and cuts_through(c, cut_state))]
            cells.append(free[rng.integers(len(free))])
            others = [c for c in CATEGORIES if c != category or task == "recognition"]
            categories.append(category if count == 2 else others[rng.integers(len(others))])
        entities = [self._entity(cat, c, cut_state, self.geometry.entity_box(c, x, y, rng))
                    for cat, c in zip(categories, cells, strict=True)]

        if task == "recognition":
            question, answer = RECOGNITION_QUESTION.format(position=POSITIONS[cell]), category
        elif task == "position":
            question, answer = POSITION_QUESTION.format(category=category), POSITIONS[cell]
        else:
            question, answer = COUNTING_QUESTION.format(category=category), str(count)
        counted = entities[:count] if task == "counting" else entities[:1]
        return {
            "id": f"entitygrid-v{VERSION}-{self.split}-{self.seed}-{index}",
            "conversations": [{"from": "human", "value": human_turn(question)}, {"from": "gpt", "value": answer}],
            "meta": {"version": VERSION, "task": task, "position": POSITIONS[cell],
                     "edge": any(e["edge"] for e in counted), "answer": answer,
                     "accepted_answers": accepted_answers(task, answer), "category": category,
                     "category_synonyms": category_synonyms(category), "entities": entities, "canvas": self.canvas,
                     "board": (x.offset, y.offset, self.geometry.board_side), "cut_state": cut_state},
        }

    def render(self, entities: list[dict], board: tuple[int, int, int]) -> bytes:
        """PNG bytes (palette mode) of the canvas with the board (x, y, side) and the entities drawn."""
        image = Image.new("P", (self.canvas, self.canvas), 0)
        image.putpalette(_PNG_PALETTE)
        draw = ImageDraw.Draw(image)
        bx, by, side = board
        draw.rectangle((bx, by, bx + side - 1, by + side - 1), fill=1)
        for entity in entities:
            draw_shape(draw, entity["shape"], entity["box"], _PALETTE_INDEX[entity["colour"]])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def __getitem__(self, index: int) -> dict:
        example = self.describe(index)
        meta = example["meta"]
        return {"id": example["id"], "image": self.render(meta["entities"], meta["board"]),
                "conversations": example["conversations"], "meta": meta}
