"""EntityGrid-QA texts: positions, categories, question templates, accepted answers (spec/methods.md §4.3, v2).

Everything the benchmark can say, without the image generator (data/entitygrid.py), so that the default
tokenizer (data/tokenizer.py) can learn its vocabulary without importing the generator.

Positions name the nine cells of the 3 x 3 board drawn in every image (top-left ... bottom-right, row-major);
categories are "<colour> <shape>" (data/shapes.py). Questions (each followed by the LLaVA short-answer suffix):

  recognition  "What object is located at the {position} of the board?"                    -> category
  position     "Where is the {category} located on the board? Answer with one of: ..."    -> position
  counting     "How many {category} are there in the image? Answer with a number."        -> "1" / "2"
"""

from vlm_jax.data.shapes import PALETTE, SHAPES
from vlm_jax.data.templates import IMAGE_PLACEHOLDER

POSITIONS: tuple[str, ...] = ("top-left", "top", "top-right", "left", "center", "right",
                              "bottom-left", "bottom", "bottom-right")
CATEGORIES: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in PALETTE for shape in SHAPES)
TASKS: tuple[str, ...] = ("recognition", "position", "counting")

SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."
RECOGNITION_QUESTION = "What object is located at the {position} of the board?"
POSITION_QUESTION = ("Where is the {category} located on the board? Answer with one of: "
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


def entitygrid_texts() -> list[str]:
    """Every question (as human turn), answer and answer synonym EntityGrid-QA can emit."""
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
