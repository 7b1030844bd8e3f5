"""SentencePiece backend (``tokenizer.model``: Llama/Vicuna, InternLM2, the embedded default vocabulary).

The text is first cut at the added tokens (:mod:`vlm_jax.data.added_tokens`); each piece between them is
encoded by SentencePiece. How a piece gets its leading "▁" (the dummy prefix) is the ``prepend`` rule:

* ``"model"``: the model's own normaliser, applied to every piece. This is SentencePiece itself, and what the
  slow tokenizers of InternLM2 and of legacy Llama do (``sp_model.encode`` per piece).
* ``"first"`` / ``"always"`` / ``"never"``: transformers 5's ``LlamaTokenizer`` (a ``Metaspace`` pre-tokenizer
  over the converted vocabulary): the model's dummy prefix is switched off and one space is prepended to the
  piece that starts the text (``first``, ``legacy=False``) or to every piece (``always``, ``legacy=True``), unless
  the piece already starts with a space; ``never`` when ``add_prefix_space=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from vlm_jax.data.added_tokens import AddedToken, split_added

PREPEND_RULES = ("model", "first", "always", "never")
_CONTROL, _USER_DEFINED = 3, 4  # ModelProto.SentencePiece.Type


class SentencePieceBackend:
    """A SentencePiece model with added tokens; ids of new added tokens follow the model's pieces.

    ``added``: ``(declared id or None, token)`` pairs in id order; a token that is already a piece keeps the
    piece's id, a new one gets the next free id, and a declared id that differs from that is refused.
    """

    def __init__(self, model_proto: bytes, added: Sequence[tuple[int | None, AddedToken]] = (),
                 prepend: str = "model", source: str = ""):
        if prepend not in PREPEND_RULES:
            raise ValueError(f"unknown prepend rule {prepend!r}; known: {PREPEND_RULES}")
        self.source, self.prepend, self._proto_bytes = source, prepend, model_proto
        self._added_spec = tuple(added)
        self._decoder = spm.SentencePieceProcessor(model_proto=model_proto)
        proto = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
        self._encoder = self._decoder
        if prepend != "model":
            proto.normalizer_spec.add_dummy_prefix = False
            self._encoder = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self._piece_types = tuple(piece.type for piece in proto.pieces)
        self._added_ids: dict[str, int] = {}
        self._added_text: dict[int, str] = {}
        self.added_tokens: tuple[AddedToken, ...] = ()
        self.size = self._decoder.get_piece_size()  # number of ids: the pieces, then the new added tokens
        for declared, token in added:
            self._add(declared, token)

    def __reduce__(self):
        return SentencePieceBackend, (self._proto_bytes, self._added_spec, self.prepend, self.source)

    def _add(self, declared: int | None, token: AddedToken) -> None:
        known = self.token_id(token.content)
        token_id = known if known is not None else self.size
        if declared is not None and declared != token_id:
            raise ValueError(f"{self.source}: added token {token.content!r} is declared with id {declared} but gets "
                             f"id {token_id} ({'its own' if known is not None else 'the next free id'})")
        if token.content in self._added_ids:
            return
        self.size += known is None
        self._added_ids[token.content] = token_id
        self._added_text[token_id] = token.content
        self.added_tokens += (token,)

    def _piece_id(self, piece: str) -> int | None:
        piece_id = self._decoder.piece_to_id(piece)
        return piece_id if self._decoder.id_to_piece(piece_id) == piece else None

    def token_id(self, token: str) -> int | None:
        """Id of an added token or a model piece whose text is exactly ``token``; None otherwise."""
        return self._added_ids[token] if token in self._added_ids else self._piece_id(token)

    def control_tokens(self) -> dict[str, str]:
        """The model's own unk/bos/eos/pad pieces by special-token name (those it has)."""
        ids = {"unk_token": self._decoder.unk_id(), "bos_token": self._decoder.bos_id(),
               "eos_token": self._decoder.eos_id(), "pad_token": self._decoder.pad_id()}
        return {key: self._decoder.id_to_piece(i) for key, i in ids.items() if i >= 0}

    def model_added_tokens(self) -> list[tuple[int, AddedToken]]:
        """The model's control (special) and user-defined (not special) pieces as added tokens, as transformers 5
        extracts them when it converts a SentencePiece model."""
        kinds = [(i, kind) for i, kind in enumerate(self._piece_types) if kind in (_CONTROL, _USER_DEFINED)]
        return [(i, AddedToken(self._decoder.id_to_piece(i), special=kind == _CONTROL)) for i, kind in kinds]

    def with_added(self, tokens: Sequence[tuple[int | None, AddedToken]]) -> SentencePieceBackend:
        return SentencePieceBackend(self._proto_bytes, self._added_spec + tuple(tokens), self.prepend, self.source)

    def _pieces(self, text: str):
        """``(start, added token or None, prefix, piece)`` for the pieces of ``text``; ``prefix`` is the space the
        prepend rule puts before a piece that is not an added token."""
        for start, end, token in split_added(text, self.added_tokens):
            piece = text[start:end]
            wanted = self.prepend == "always" or (self.prepend == "first" and start == 0)
            yield start, token, " " if token is None and wanted and not piece.startswith(" ") else "", piece

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``."""
        ids = []
        for _, token, prefix, piece in self._pieces(text):
            ids += [self._added_ids[token.content]] if token is not None else self._encoder.encode(prefix + piece)
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of ``text`` and the character span ``(start, end)`` of ``text`` that each id stands for."""
        ids, offsets = [], []
        for start, token, prefix, piece in self._pieces(text):
            if token is not None:
                ids.append(self._added_ids[token.content])
                offsets.append((start, start + len(piece)))
                continue
            encoded = self._encoder.encode(prefix + piece, return_type="proto").pieces
            # SentencePiece gives byte offsets into prefix + piece: map them to characters of text; the prefix
            # belongs to the piece's first character (as in transformers' offsets)
            chars = prefix + piece
            char_at_byte = np.repeat(np.arange(len(chars) + 1), [len(c.encode()) for c in chars] + [1])
            char_at_byte = np.maximum(char_at_byte - len(prefix), 0) + start
            ids += [p.id for p in encoded]
            offsets += [(int(char_at_byte[p.begin]), max(int(char_at_byte[p.end]), start + bool(prefix)))
                        for p in encoded]
        return ids, offsets

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: added tokens as their text, runs of model pieces through SentencePiece; under a
        Metaspace rule one leading space (the prepended one) is dropped, as transformers' decoder does."""
        decoder = self._decoder if self.prepend == "model" else self._encoder
        out, run = [], []
        for token_id in map(int, ids):
            if token_id in self._added_text:
                out += [decoder.decode(run), self._added_text[token_id]]
                run = []
            else:
                run.append(token_id)
        text = "".join(out) + decoder.decode(run)
        return text[1:] if self.prepend in ("first", "always") and text.startswith(" ") else text


def read_model(path: str) -> bytes:
    """Bytes of a SentencePiece model file; a clear error for files that are not one (e.g. Meta's original
    Llama-3 ``tokenizer.model``, which holds tiktoken ranks: use the HF directory's ``tokenizer.json``)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        spm.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{path} is not a SentencePiece model ({e}); a tiktoken file such as Meta's original "
                         "Llama-3 tokenizer.model is not supported: use the HF checkpoint's tokenizer.json") from e
    return data
