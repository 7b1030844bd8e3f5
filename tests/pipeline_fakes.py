"""Small stand-ins for the pipeline tests: an ImageProcessor, a tokenizer and a template function.

They follow the data contract (vlm_jax/data/pipeline.py ``ImageProcessor``; D1's
``tokenize_conversation``) closely enough to exercise the pipeline, and live in their own module so
``mp_prefetch`` worker processes (spawned) can unpickle them.

Example ids "ex<k>" written in a human turn become token ``ID_BASE + k``, so a batch row can be traced
back to its example with :func:`row_ids`.
"""

import io
from typing import NamedTuple

import numpy as np
from PIL import Image

ID_BASE = 1000
PAD, BOS, EOS, IMAGE = 0, 1, 2, 3


class FakeProcessor:
    """Grid of up to 2x2 tiles (+ a global view when there is more than one tile), PIL resizes,
    and an RNG-dependent brightness jitter so Grain's per-element RNG is visible in the pixels."""

    max_views = 5

    def __init__(self, tile_size: int = 8):
        self.tile_size = tile_size

    def process(self, image: np.ndarray, rng: np.random.Generator):
        height, width = image.shape[:2]
        rows, cols = (1 if height <= 16 else 2), (1 if width <= 16 else 2)
        t = self.tile_size
        pil = Image.fromarray(image)
        views = [np.asarray(pil.resize((t, t), Image.BILINEAR))]
        if rows * cols > 1:
            grid = np.asarray(pil.resize((cols * t, rows * t), Image.BILINEAR))
            views += [grid[r * t:(r + 1) * t, c * t:(c + 1) * t] for r in range(rows) for c in range(cols)]
        jitter = rng.uniform(-0.1, 0.1)
        return np.stack(views).astype(np.float32) / 255.0 + np.float32(jitter), (rows, cols)

    def num_image_tokens(self, n_views, grid, orig_size):
        return 2 * n_views


class FakeTokenizer:
    pad_id, bos_id, eos_id, image_token_id = PAD, BOS, EOS, IMAGE

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.split():
            if word.startswith("ex") and word[2:].isdigit():
                ids.append(ID_BASE + int(word[2:]))
            else:
                ids.append(10 + sum(word.encode()) % 80)
        return ids


class Tokenized(NamedTuple):
    tokens: np.ndarray
    loss_mask: np.ndarray
    image_slots: np.ndarray
    prompt_mask: np.ndarray


def fake_tokenize(tok: FakeTokenizer, template: str, conversations, num_image_tokens: int) -> Tokenized:
    """BOS, human turns (prompt), gpt turns + EOS (loss); "<image>" expands to image slots."""
    if not conversations:
        raise ValueError("empty conversation")
    n_placeholders = sum(turn["value"].count("<image>") for turn in conversations)
    if n_placeholders != (1 if num_image_tokens else 0):
        raise ValueError(f"{n_placeholders} <image> placeholders for {num_image_tokens} image tokens")
    tokens, loss, slots, prompt = [BOS], [False], [False], [False]

    def add(ids, *, is_loss=False, is_slot=False, is_prompt=False):
        tokens.extend(ids)
        loss.extend([is_loss] * len(ids))
        slots.extend([is_slot] * len(ids))
        prompt.extend([is_prompt] * len(ids))

    for turn in conversations:
        if turn["from"] == "human":
            for i, part in enumerate(turn["value"].split("<image>")):
                if i:
                    add([IMAGE] * num_image_tokens, is_slot=True)
                add(tok.encode(part), is_prompt=True)
        else:
            add(tok.encode(turn["value"]) + [EOS], is_loss=True)
    return Tokenized(np.array(tokens, np.int32), np.array(loss), np.array(slots), np.array(prompt))


def png_bytes(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def raw_example(k: int, *, size=(12, 20), words: int = 3, image: bytes | None | str = "png") -> dict:
    """Example "ex<k>": an image of ``size`` (or the given bytes / None) and a short QA."""
    if image == "png":
        image = png_bytes(*size, seed=k)
    question = ("<image> " if image is not None else "") + f"what is ex{k} " + "word " * words
    return {"id": f"ex{k}", "image": image, "meta": {},
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "a cat"}]}


def row_ids(batch: dict) -> list[str | None]:
    """Example id of each row (None for an all-padding row)."""
    ids = []
    for tokens, valid in zip(batch["tokens"], batch["valid"]):
        found = [t - ID_BASE for t in tokens[valid] if t >= ID_BASE]
        ids.append(f"ex{found[0]}" if found else None)
    return ids
