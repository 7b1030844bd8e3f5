"""EntityGrid-QA: synthetic fragmentation benchmark of HiRes-LLaVA (spec/methods.md §4.3).

An S x S white canvas (S = 2 t for slice size t, so a 2x2 slicing cuts it at x = S/2 and y = S/2)
holds one or two entities at the nine anchors {1/4, 1/2, 3/4}^2. Entities are procedurally drawn
"<colour> <shape>" categories (vlm_jax/data/shapes.py). Each example asks one question of one of
three tasks:

  recognition  "What object is located at the {position} of the image?"       -> "<colour> <shape>"
  position     "Where is the {category} located in the image? Answer with one of: ..." -> position
  counting     "How many {category} are there in the image? Answer with a number."     -> "1" / "2"

followed by the LLaVA short-answer suffix. Project [inferred] choices (the paper's are unknown):
  * index i fixes the task (i mod #tasks) and the asked position ((i div #tasks) mod 9), so any
    prefix of 9 * #tasks examples is exactly balanced over tasks x positions;
  * everything else comes from np.random.default_rng([seed, split code, i]) (disjoint seed
    streams per split); each entity's centre is jittered by up to +-0.02 S (at least 1 px), and
    its horizontal offset is congruent to the split code mod 3, so no image of one split can
    appear in another;
  * the second entity's box never overlaps the first (gap >= 2 px, jitter included); when no anchor
    is far enough (the centre, for entity size 0.3 S) the example keeps a single entity;
  * counting: when a second entity fits, with probability 0.5 it shares the asked category
    (answer "2"), else the entity count is drawn from n_entities and a second entity gets another
    category (answer "1"); position questions always ask a unique category;
  * edge(p) is True for the five anchors on a cut line (top, left, center, right, bottom); the
    example's edge flag is the asked entity's, for counting whether any counted entity is on an edge.
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from vlm_jax.data.shapes import BACKGROUND, PALETTE, SHAPES, draw_shape
from vlm_jax.data.templates import IMAGE_PLACEHOLDER

POSITIONS: tuple[str, ...] = ("top-left", "top", "top-right", "left", "center", "right",
                              "bottom-left", "bottom", "bottom-right")
EDGE_POSITIONS = frozenset({"top", "left", "center", "right", "bottom"})
ANCHOR_FRACTIONS = (0.25, 0.5, 0.75)
CATEGORIES: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in PALETTE for shape in SHAPES)
TASKS: tuple[str, ...] = ("recognition", "position", "counting")
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}

SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."
RECOGNITION_QUESTION = "What object is located at the {position} of the image?"
POSITION_QUESTION = ("Where is the {category} located in the image? Answer with one of: "
                     + ", ".join(POSITIONS) + ".")
COUNTING_QUESTION = "How many {category} are there in the image? Answer with a number."

SHAPE_SYNONYMS = {"circle": ("disk", "dot"), "square": ("box",), "cross": ("plus", "plus sign"),
                  "diamond": ("rhombus",), "ring": ("donut", "annulus")}
COLOUR_SYNONYMS = {"purple": ("violet",), "cyan": ("turquoise",)}
POSITION_SYNONYMS = {
    "top-left": ("top left", "upper left"), "top": ("top center", "top middle", "upper middle"),
    "top-right": ("top right", "upper right"), "left": ("middle left", "center left"),
    "center": ("centre", "middle"), "right": ("middle right", "center right"),
    "bottom-left": ("bottom left", "lower left"), "bottom": ("bottom center", "bottom middle", "lower middle"),
    "bottom-right": ("bottom right", "lower right"),
}
COUNT_SYNONYMS = {"0": ("zero", "none"), "1": ("one",), "2": ("two",)}

# Images are palette PNGs (index 0 = background): >10x faster to encode than RGB, same pixels after
# decoding with PIL's .convert("RGB").
_PALETTE_INDEX = {name: k + 1 for k, name in enumerate(PALETTE)}
_PNG_PALETTE = [c for rgb in (BACKGROUND, *PALETTE.values()) for c in rgb]


def is_edge(position: str) -> bool:
    """True when the anchor lies on a 2x2 cut line (the entity is split into 2 or 4 slices)."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}; known: {', '.join(POSITIONS)}")
    return position in EDGE_POSITIONS


def category_synonyms(category: str) -> tuple[str, ...]:
    """All accepted names of a category: the name itself first, then colour x shape synonyms."""
    colour, shape = category.split(" ", 1)
    colours = (colour, *COLOUR_SYNONYMS.get(colour, ()))
    shapes = (shape, *SHAPE_SYNONYMS.get(shape, ()))
    return tuple(f"{c} {s}" for c in colours for s in shapes)


def accepted_answers(task: str, answer: str) -> tuple[str, ...]:
    """Answers a scorer should accept for `answer` of `task` (the canonical answer first)."""
    if task == "recognition":
        return category_synonyms(answer)
    if task == "position":
        return (answer, *POSITION_SYNONYMS[answer])
    if task == "counting":
        return (answer, *COUNT_SYNONYMS[answer])
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def human_turn(question: str) -> str:
    """LLaVA-style first human turn: image placeholder, question, short-answer suffix."""
    return f"{IMAGE_PLACEHOLDER}\n{question}\n{SHORT_ANSWER_SUFFIX}"


class EntityGridQA:
    """Random-access EntityGrid-QA examples, fully determined by (seed, split, index).

    Args:
      split: "train", "validation" or "test".
      size: number of examples (len).
      seed: base seed.
      canvas: side S of the square image in pixels (S = 2 t for slice size t); >= 32.
      n_entities: 1, 2, or (1, 2) for a uniform draw per example.
      tasks: subset of TASKS, cycled over the index.
      entity_frac: entity box side as a fraction of S (spec: about 0.3).
      jitter_frac: maximal centre offset per axis as a fraction of S (> 0).
    Items are raw examples of the data contract: {"id", "image" (PNG bytes), "conversations"
    (one human question with "<image>", one gpt answer), "meta"}.
    """

    def __init__(self, split: str, size: int, seed: int = 0, canvas: int = 448,
                 n_entities: int | tuple[int, ...] = (1, 2), tasks: tuple[str, ...] = TASKS,
                 entity_frac: float = 0.3, jitter_frac: float = 0.02):
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
        if not 0 < entity_frac + 2 * jitter_frac <= 0.5 or jitter_frac <= 0:
            raise ValueError("need 0 < entity_frac + 2 * jitter_frac <= 0.5 so entities stay on the canvas, "
                             f"got entity_frac={entity_frac}, jitter_frac={jitter_frac}")
        self.split, self.size, self.seed, self.canvas = split, size, seed, canvas
        self.entity_counts, self.tasks = counts, tasks
        self.half_side = max(2, round(entity_frac * canvas / 2))
        self.max_jitter = max(1, int(jitter_frac * canvas))
        self._x_offsets = [d for d in range(-self.max_jitter, self.max_jitter + 1) if d % 3 == SPLIT_CODES[split]]
        self._partners = {p: self._far_positions(p) for p in POSITIONS}

    def __len__(self) -> int:
        return self.size

    def anchor(self, position: str) -> tuple[float, float]:
        """(x, y) pixel coordinates of a named anchor."""
        row, col = divmod(POSITIONS.index(position), 3)
        return ANCHOR_FRACTIONS[col] * self.canvas, ANCHOR_FRACTIONS[row] * self.canvas

    def _far_positions(self, position: str) -> tuple[str, ...]:
        """Anchors whose entity boxes (worst-case jitter) stay >= 2 px away from `position`'s."""
        reach = 2 * self.half_side + 2 * self.max_jitter + 2
        x, y = self.anchor(position)
        far = []
        for other in POSITIONS:
            ox, oy = self.anchor(other)
            if abs(ox - x) > reach or abs(oy - y) > reach:
                far.append(other)
        return tuple(far)

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
        texts = [human_turn(RECOGNITION_QUESTION.format(position=p)) for p in POSITIONS]
        for category in CATEGORIES:
            texts.append(human_turn(POSITION_QUESTION.format(category=category)))
            texts.append(human_turn(COUNTING_QUESTION.format(category=category)))
            texts.extend(category_synonyms(category))
        for position in POSITIONS:
            texts.extend(accepted_answers("position", position))
        for count in COUNT_SYNONYMS:
            texts.extend(accepted_answers("counting", count))
        return texts

    def _entity(self, category: str, position: str, rng: np.random.Generator) -> dict:
        x, y = self.anchor(position)
        dx = self._x_offsets[rng.integers(len(self._x_offsets))]
        dy = rng.integers(-self.max_jitter, self.max_jitter, endpoint=True)
        cx, cy = round(x) + dx, round(y) + int(dy)
        h = self.half_side
        colour, shape = category.split(" ", 1)
        return {"category": category, "colour": colour, "shape": shape, "position": position,
                "edge": is_edge(position), "box": (cx - h, cy - h, cx + h, cy + h)}

    def _sample_entities(self, task: str, position: str, rng: np.random.Generator) -> list[dict]:
        target = CATEGORIES[rng.integers(len(CATEGORIES))]
        entities = [self._entity(target, position, rng)]
        partners = self._partners[position]
        shared = task == "counting" and 2 in self.entity_counts and bool(partners) and rng.random() < 0.5
        n = 2 if shared else self.entity_counts[rng.integers(len(self.entity_counts))]
        if n == 2 and partners:
            other_position = partners[rng.integers(len(partners))]
            others = [c for c in CATEGORIES if c != target]
            if shared:
                other = target
            elif task == "recognition":
                other = CATEGORIES[rng.integers(len(CATEGORIES))]
            else:
                other = others[rng.integers(len(others))]
            entities.append(self._entity(other, other_position, rng))
        return entities

    def render(self, entities: list[dict]) -> bytes:
        """PNG bytes (palette mode) of the canvas with the given entities drawn."""
        image = Image.new("P", (self.canvas, self.canvas), 0)
        image.putpalette(_PNG_PALETTE)
        draw = ImageDraw.Draw(image)
        for entity in entities:
            draw_shape(draw, entity["shape"], entity["box"], _PALETTE_INDEX[entity["colour"]])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for EntityGridQA of size {self.size}")
        task = self.tasks[index % len(self.tasks)]
        position = POSITIONS[(index // len(self.tasks)) % len(POSITIONS)]
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        entities = self._sample_entities(task, position, rng)
        target = entities[0]
        if task == "recognition":
            question, answer = RECOGNITION_QUESTION.format(position=position), target["category"]
            edge = target["edge"]
        elif task == "position":
            question, answer = POSITION_QUESTION.format(category=target["category"]), position
            edge = target["edge"]
        else:
            counted = [e for e in entities if e["category"] == target["category"]]
            question, answer = COUNTING_QUESTION.format(category=target["category"]), str(len(counted))
            edge = any(e["edge"] for e in counted)
        return {
            "id": f"entitygrid-{self.split}-{self.seed}-{index}",
            "image": self.render(entities),
            "conversations": [{"from": "human", "value": human_turn(question)},
                              {"from": "gpt", "value": answer}],
            "meta": {"task": task, "position": position, "edge": edge, "answer": answer,
                     "accepted_answers": accepted_answers(task, answer),
                     "category": target["category"],
                     "category_synonyms": category_synonyms(target["category"]),
                     "entities": entities, "canvas": self.canvas},
        }
