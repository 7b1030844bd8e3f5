"""Hugging Face ``tokenizers`` backend (``tokenizer.json``: Llama-3, Qwen2, llava-hf, ...).

The file is used as written (normaliser, pre-tokenizer, model, added tokens), the way transformers 5 uses it for
``PreTrainedTokenizerFast``/``TokenizersBackend`` checkpoints; added tokens that only the tokenizer config names
are added on top. Padding and truncation stored in the file are switched off: the pipeline pads to its buckets
and refuses over-long examples itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tokenizers

from vlm_jax.data.added_tokens import AddedToken


class TokenizersBackend:
    """A ``tokenizers.Tokenizer`` with extra added tokens (``(declared id or None, token)`` pairs in id order)."""

    def __init__(self, tokenizer_json: str, added: Sequence[tuple[int | None, AddedToken]] = (), source: str = ""):
        self.source, self._json, self._added_spec = source, tokenizer_json, tuple(added)
        self._tok = tokenizers.Tokenizer.from_str(tokenizer_json)
        self._tok.no_padding()
        self._tok.no_truncation()
        for declared, token in added:
            self._add(declared, token)
        decoder = self._tok.get_added_tokens_decoder()
        self.added_tokens = tuple(AddedToken(t.content, special=t.special, lstrip=t.lstrip, rstrip=t.rstrip,
                                             normalized=t.normalized, single_word=t.single_word)
                                  for _, t in sorted(decoder.items()))
        self.size = max([self._tok.get_vocab_size(with_added_tokens=False), *(i + 1 for i in decoder)])

    def __reduce__(self):
        return TokenizersBackend, (self._json, self._added_spec, self.source)

    def _add(self, declared: int | None, token: AddedToken) -> None:
        if token.content not in {t.content for t in self._tok.get_added_tokens_decoder().values()}:
            self._tok.add_tokens([tokenizers.AddedToken(
                token.content, single_word=token.single_word, lstrip=token.lstrip, rstrip=token.rstrip,
                normalized=token.normalized, special=token.special)])
        token_id = self._tok.token_to_id(token.content)
        if declared is not None and declared != token_id:
            raise ValueError(f"{self.source}: added token {token.content!r} is declared with id {declared} but gets "
                             f"id {token_id}")

    def token_id(self, token: str) -> int | None:
        """Id of an added token or a vocabulary entry whose text is exactly ``token``; None otherwise."""
        return self._tok.token_to_id(token)

    def with_added(self, tokens: Sequence[tuple[int | None, AddedToken]]) -> TokenizersBackend:
        return TokenizersBackend(self._json, self._added_spec + tuple(tokens), self.source)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no template post-processing)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of ``text`` and the character span ``(start, end)`` of ``text`` that each id stands for."""
        encoding = self._tok.encode(text, add_special_tokens=False)
        return list(encoding.ids), [tuple(o) for o in encoding.offsets]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)
