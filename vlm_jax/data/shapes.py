"""Procedural entity drawing for the EntityGrid-QA generator (spec/methods.md §4.3, [inferred]).

The spec leaves the entity assets open ("object icons ... or procedurally drawn shapes+colours for a
fully synthetic version"); vlm_jax uses the synthetic version: an entity category is
"<colour> <shape>", drawn as one flat, solid-colour, connected region (no anti-aliasing, so every
entity pixel has exactly its palette colour and PNG round trips keep it).
"""

import math

from PIL import ImageDraw

# Saturated, well separated hues (plus black) so colour names are unambiguous to a viewer.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "orange": (245, 130, 0),
    "yellow": (235, 205, 0),
    "green": (20, 160, 40),
    "cyan": (0, 190, 210),
    "blue": (20, 60, 220),
    "purple": (130, 40, 190),
    "black": (0, 0, 0),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "hexagon")

BACKGROUND = (255, 255, 255)


def _regular_polygon(cx: float, cy: float, radius: float, n: int, phase: float) -> list[tuple[float, float]]:
    """Vertices of a regular n-gon centred on (cx, cy); `phase` is the angle of the first vertex."""
    return [
        (cx + radius * math.cos(phase + 2 * math.pi * k / n), cy + radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    """Five-pointed star, first point straight up, inner radius 0.45 of the outer one."""
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else 0.45 * radius
        angle = -math.pi / 2 + math.pi * k / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _cross(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """Plus sign filling the box, arm thickness 1/3 of the box side."""
    w, h = x1 - x0, y1 - y0
    a0, a1 = x0 + w / 3, x0 + 2 * w / 3
    b0, b1 = y0 + h / 3, y0 + 2 * h / 3
    return [(a0, y0), (a1, y0), (a1, b0), (x1, b0), (x1, b1), (a1, b1),
            (a1, y1), (a0, y1), (a0, b1), (x0, b1), (x0, b0), (a0, b0)]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
               colour: int | tuple[int, int, int]) -> None:
    """Draws `shape` filled with `colour` (RGB, or a palette index on "P" images) inside the pixel
    box (x0, y0, x1, y1) (inclusive corners).

    Every shape is one connected region touching the box's extent along at least one axis.
    Raises ValueError for an unknown shape name.
    """
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    radius = (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "star":
        draw.polygon(_star(cx, cy, radius), fill=colour)
    elif shape == "cross":
        draw.polygon(_cross(x0, y0, x1, y1), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(1, round(0.3 * radius)))
    elif shape == "hexagon":
        draw.polygon(_regular_polygon(cx, cy, radius, 6, 0.0), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
