"""EntityGrid-QA v2 geometry: a 3 x 3 board moved under the fixed 2 x 2 cut lines (spec/methods.md §4.3, v2).

Why the board moves. A model under test slices the S x S canvas 2 x 2 (S = 2 t for tile t), so the cut lines
sit at S / 2 whatever the image shows. If positions were fixed fractions of the canvas (v1), "is the entity
cut" would be a function of its position name: the centre and the four edge midpoints always, the corners
never. v2 draws a visible 3 x 3 board (grey square) smaller than the canvas and moves it, so the cut lines
can pass through any board cell or between cells; position names refer to the board's cells.

Pixels: x right, y down. The board has `cell`-pixel cells and its top-left corner at (ox, oy). The entity of
column j (row i) is centred on pixel ``o + j * cell + cell // 2 + d`` (jitter |d| <= max_jitter) and covers
pixels centre - h .. centre + h (side 2 h + 1), the continuous interval [centre - h, centre + h + 1). Along one
axis, an entity is

  hit    when the cut line passes through its middle half: |S/2 - (centre + 1/2)| <= (2 h + 1) / 4,
  clear  when the cut line does not touch it: S/2 <= centre - h or S/2 >= centre + h + 1;

offsets that would graze an entity (neither) are never generated. An axis state is the column (row) whose
entities the cut line hits, 0, 1 or 2, or ``MISS`` (it passes between entities). A cut state of an image is
a cell k (0..8, row-major): the vertical cut hits column k % 3 and the horizontal cut row k // 3, so the cut
lines cross in cell k; or ``MISS_STATE`` (9): both cut lines pass between entities. Under cut state k < 9 the
entity in cell p is cut into 4 pieces when p == k, into 2 when it shares only a row or a column with k, and
not at all otherwise (always under MISS_STATE): for every cell, exactly 5 of the 10 cut states cut it.

Splits are kept apart by the board corner: ``(ox + oy) % 3`` is the split's code (train 0, validation 1,
test 2), which the pixels show, so no image of one split can appear in another.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MISS = 3  # axis state: the cut line passes between the entities of every column (row)
MISS_STATE = 9  # cut state: both cut lines miss every entity
CUT_STATES = tuple(range(10))
BOARD_COLOUR = (215, 215, 215)


def cuts_through(cell: int, cut_state: int) -> int:
    """How many cut lines (0, 1 or 2) go through the entity in board cell `cell` under `cut_state`."""
    if cut_state == MISS_STATE:
        return 0
    return int(cell % 3 == cut_state % 3) + int(cell // 3 == cut_state // 3)


def axis_states(cut_state: int) -> tuple[int, int]:
    """(x state, y state) of a cut state: the column and row the cut lines hit, or MISS."""
    return (MISS, MISS) if cut_state == MISS_STATE else (cut_state % 3, cut_state // 3)


@dataclasses.dataclass(frozen=True)
class AxisOption:
    """One board offset along an axis and, per column (row), the jitters giving that column its state."""

    offset: int
    jitters: tuple[tuple[int, ...], ...]


class BoardGeometry:
    """Board offsets realising each cut state on a `canvas`-pixel canvas (module docstring).

    Args:
      canvas: S, the canvas side; the cut lines are at S / 2.
      cell: side of a board cell in pixels (the board is 3 cells wide).
      half_side: h, an entity covers 2 h + 1 pixels per axis.
      max_jitter: largest entity centre offset from its cell centre, per axis.
    Raises ValueError when entities do not fit their cells with a gap, or some cut state cannot be drawn
    for some split (the message names the state).
    """

    def __init__(self, canvas: int, cell: int, half_side: int, max_jitter: int):
        self.canvas, self.cell, self.half_side, self.max_jitter = canvas, cell, half_side, max_jitter
        if 3 * cell > canvas:
            raise ValueError(f"a board of 3 x {cell} px cells does not fit a {canvas} px canvas")
        if cell < 2 * (half_side + max_jitter + 1):
            raise ValueError(f"entities of {2 * half_side + 1} px with jitter {max_jitter} px do not fit "
                             f"{cell} px board cells with a 1 px gap; lower entity_frac or jitter_frac")
        jitters = range(-max_jitter, max_jitter + 1)
        options: dict[int, list[AxisOption]] = {s: [] for s in (0, 1, 2, MISS)}
        for offset in range(canvas - 3 * cell + 1):
            hit = [tuple(d for d in jitters if self._hit(self._centre(offset, j) + d)) for j in range(3)]
            clear = [tuple(d for d in jitters if self._clear(self._centre(offset, j) + d)) for j in range(3)]
            for state in options:
                choice = tuple(hit[j] if j == state else clear[j] for j in range(3))
                if all(choice):
                    options[state].append(AxisOption(offset, choice))
        self._options = options
        self._by_residue = {s: [[o for o in opts if o.offset % 3 == r] for r in range(3)]
                            for s, opts in options.items()}
        for cut_state in CUT_STATES:
            for residue in range(3):
                if not self._compatible(*axis_states(cut_state), residue):
                    where = "between entities" if cut_state == MISS_STATE else f"through board cell {cut_state}"
                    raise ValueError(f"a {canvas} px canvas with {cell} px board cells and {2 * half_side + 1} px "
                                     f"entities cannot put the cut lines {where} for split code {residue}; "
                                     "lower entity_frac or board_frac, or use a larger canvas")

    @property
    def board_side(self) -> int:
        return 3 * self.cell

    def _centre(self, offset: int, index: int) -> int:
        return offset + index * self.cell + self.cell // 2

    def _hit(self, centre: int) -> bool:  # |S/2 - (centre + 1/2)| <= (2h + 1) / 4, times 4
        return abs(2 * self.canvas - 4 * centre - 2) <= 2 * self.half_side + 1

    def _clear(self, centre: int) -> bool:
        return self.canvas <= 2 * (centre - self.half_side) or self.canvas >= 2 * (centre + self.half_side + 1)

    def _compatible(self, x_state: int, y_state: int, residue: int) -> list[AxisOption]:
        """The x options that some y option completes to ox + oy = residue (mod 3)."""
        ys = self._by_residue[y_state]
        return [o for o in self._options[x_state] if ys[(residue - o.offset) % 3]]

    def sample(self, cut_state: int, residue: int, rng: np.random.Generator) -> tuple[AxisOption, AxisOption]:
        """Random (x, y) board options realising `cut_state` with (ox + oy) % 3 == residue."""
        x_state, y_state = axis_states(cut_state)
        xs = self._compatible(x_state, y_state, residue)
        x = xs[rng.integers(len(xs))]
        ys = self._by_residue[y_state][(residue - x.offset) % 3]
        return x, ys[rng.integers(len(ys))]

    def entity_box(self, cell: int, x: AxisOption, y: AxisOption,
                   rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Inclusive pixel box (x0, y0, x1, y1) of the entity in board `cell` under the board options (x, y)."""
        row, col = divmod(cell, 3)
        cx = self._centre(x.offset, col) + x.jitters[col][rng.integers(len(x.jitters[col]))]
        cy = self._centre(y.offset, row) + y.jitters[row][rng.integers(len(y.jitters[row]))]
        h = self.half_side
        return cx - h, cy - h, cx + h, cy + h
