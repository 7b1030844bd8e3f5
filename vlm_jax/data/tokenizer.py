"""One tokenizer interface over both backends, loaded from a checkpoint; deterministic trainer; embedded default.

Data contract (DESIGN.md "Data flow": text -> chat template -> tokenizer): :meth:`Tokenizer.encode` never adds
BOS/EOS (templates place them); ``image_token_id`` is the id written into the ``num_image_tokens`` visual slots
(the model overwrites those positions, ``image_slots`` is the authoritative mask).

* :func:`load_tokenizer` reads a Hugging Face checkpoint directory (or a tokenizer file in one) and gives ids
  identical to ``transformers.AutoTokenizer``'s ``encode(text, add_special_tokens=False)``: a ``tokenizer.json``
  through the ``tokenizers`` library (Llama-3, Qwen2), a ``tokenizer.model`` through SentencePiece (Vicuna,
  InternLM2), with the added and special tokens and the chat template of the tokenizer config files
  (:mod:`vlm_jax.data.tokenizer_files`).
* ``Tokenizer(path)`` on a bare SentencePiece model file uses SentencePiece's own encoding, no added tokens (the
  embedded default and configs naming a ``tokenizer.model``). Models trained by :func:`train_tokenizer` use
  identity normalisation, no dummy prefix and no whitespace folding, so encoding template segments one by one
  and concatenating the ids decodes to exactly the concatenated text; byte fallback lets any UTF-8 text encode
  without <unk>.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import sentencepiece as spm

from vlm_jax.data.added_tokens import AddedToken
from vlm_jax.data.entitygrid_text import entitygrid_texts
from vlm_jax.data.templates import IMAGE_PLACEHOLDER, template_specials, template_texts
from vlm_jax.data.tokenizer_files import SENTENCEPIECE_MODEL, TOKENIZER_CONFIG, TOKENIZER_JSON, TokenizerFiles
from vlm_jax.data.tokenizer_hf import TokenizersBackend
from vlm_jax.data.tokenizer_sp import SentencePieceBackend, read_model

CONTROL_PIECES = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0..3 of trained models
DEFAULT_VOCAB_SIZE = 512
IMAGE_TOKEN_CANDIDATES = (IMAGE_PLACEHOLDER, "<IMG_CONTEXT>")  # LLaVA / llava-hf, InternVL
_TRAINER_VERSION = 1  # bump when the trainer options below change (invalidates cached defaults)


class MissingImageTokenError(LookupError):
    """The tokenizer has no image token (a LookupError, so data pipelines do not mistake it for a bad example)."""


class Backend(Protocol):
    """What :class:`Tokenizer` needs from a backend (``tokenizer_sp`` and ``tokenizer_hf`` provide it)."""

    source: str
    size: int
    added_tokens: tuple[AddedToken, ...]

    def encode(self, text: str) -> list[int]: ...
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def token_id(self, token: str) -> int | None: ...
    def with_added(self, tokens: Sequence[tuple[int | None, AddedToken]]) -> Backend: ...


class Tokenizer:
    """Token ids, special ids and the chat template of one tokenizer, whatever its backend.

    ``Tokenizer(path)`` loads a bare SentencePiece model file; :func:`load_tokenizer` builds one from a checkpoint.
    Without a pad token the pad id falls back to <unk>, then to EOS; a missing EOS is refused; template specials
    missing from the vocabulary are encoded as plain text (:meth:`special_ids`).
    """

    def __init__(self, model: str | Backend, *, special_tokens: Mapping[str, str] | None = None,
                 chat_template: str | None = None, image_token: str | None = None):
        if isinstance(model, str):
            if not os.path.isfile(model):
                raise FileNotFoundError(f"SentencePiece model not found: {model}")
            model = SentencePieceBackend(read_model(model), source=model)
            special_tokens = model.control_tokens() if special_tokens is None else special_tokens
        self._backend = model
        self.special_tokens = dict(special_tokens or {})
        self.chat_template = chat_template
        self._image_token = image_token
        if self._special_id("eos_token") < 0:
            raise ValueError(f"tokenizer {self.model_path} has no EOS token")

    @property
    def model_path(self) -> str:
        """The file the tokenizer was loaded from."""
        return self._backend.source

    def _special_id(self, key: str) -> int:
        token = self.special_tokens.get(key)
        token_id = None if token is None else self._backend.token_id(token)
        return -1 if token_id is None else token_id

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (added tokens included): ``len(AutoTokenizer)``."""
        return self._backend.size

    @property
    def bos_id(self) -> int:
        """BOS id, or -1 when the tokenizer has none (templates then start without BOS)."""
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int:
        return self._special_id("eos_token")

    @property
    def pad_id(self) -> int:
        """The pad token's id, else <unk>'s, else EOS's."""
        return next(i for i in (self._special_id("pad_token"), self._special_id("unk_token"), self.eos_id) if i >= 0)

    @property
    def added_tokens(self) -> tuple[str, ...]:
        """Texts matched whole before segmentation (added and special tokens of a checkpoint tokenizer)."""
        return tuple(t.content for t in self._backend.added_tokens)

    @property
    def image_token(self) -> str | None:
        """The image token's text: the one named by the checkpoint or the caller, else the first of
        ``IMAGE_TOKEN_CANDIDATES`` in the vocabulary; None when there is none."""
        if self._image_token is not None:
            return self._image_token if self._backend.token_id(self._image_token) is not None else None
        return next((t for t in IMAGE_TOKEN_CANDIDATES if self._backend.token_id(t) is not None), None)

    @property
    def has_image_token(self) -> bool:
        return self.image_token is not None

    @property
    def image_token_id(self) -> int:
        """Id of the image token; :class:`MissingImageTokenError` when the tokenizer has none."""
        token = self.image_token
        if token is None:
            wanted = [self._image_token] if self._image_token is not None else list(IMAGE_TOKEN_CANDIDATES)
            raise MissingImageTokenError(
                f"tokenizer {self.model_path} has no image token (looked for {wanted}): add one with "
                "tokenizer.with_image_token() and give the model vocab_size >= tokenizer.vocab_size (new embedding "
                "rows), or use a checkpoint whose tokenizer has one (e.g. llava-hf's <image>)")
        return self._backend.token_id(token)

    def with_image_token(self, token: str = IMAGE_PLACEHOLDER) -> Tokenizer:
        """This tokenizer if it has an image token, else a copy with ``token`` added as a special token at id
        ``vocab_size`` (as ``AutoTokenizer.add_tokens([token], special_tokens=True)`` does)."""
        if self.has_image_token:
            return self
        backend = self._backend.with_added([(None, AddedToken(token, special=True))])
        return Tokenizer(backend, special_tokens=self.special_tokens, chat_template=self.chat_template,
                         image_token=token)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._backend.encode(text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and, per id, the character span ``(start, end)`` of ``text`` it stands for."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._backend.encode_with_offsets(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode([int(i) for i in ids])

    def special_ids(self, name: str) -> list[int]:
        """Ids of a template special ("<|im_start|>", "</s>", ...): its single token when the vocabulary has it,
        else the encoding of its text."""
        token_id = self._backend.token_id(name)
        return [token_id] if token_id is not None else self.encode(name)


def _metaspace_rule(config: Mapping) -> str:
    """transformers 5 ``LlamaTokenizer``: ``add_prefix_space`` (default true) and ``legacy`` (default false)."""
    if config.get("add_prefix_space") is False:
        return "never"
    return "always" if config.get("legacy") else "first"


# tokenizer_class of a SentencePiece checkpoint -> its prepend rule (tokenizer_sp module docstring)
SENTENCEPIECE_CLASSES: dict[str, Callable[[Mapping], str]] = {
    "LlamaTokenizer": _metaspace_rule,
    "LlamaTokenizerFast": _metaspace_rule,
    "InternLM2Tokenizer": lambda config: "model",  # remote code: sp_model.encode per piece between added tokens
    "InternLM2TokenizerFast": lambda config: "model",
}


def _backend(files: TokenizerFiles, json_file: str | None) -> Backend:
    """The checkpoint's backend: its SentencePiece model when its tokenizer class is a SentencePiece one (or it has
    no tokenizer.json), else its tokenizer.json; with the config's added and special tokens on top."""
    tokens = [*files.added_tokens, *((None, t) for t in files.special_tokens.values()),
              *((None, t) for t in files.extra_special_tokens)]
    use_model = json_file is None and files.has(SENTENCEPIECE_MODEL) and (
        files.tokenizer_class in SENTENCEPIECE_CLASSES or not files.has(TOKENIZER_JSON))
    if use_model:
        cls = files.tokenizer_class
        if cls is not None and cls not in SENTENCEPIECE_CLASSES:
            raise ValueError(f"{files.directory}: tokenizer_class {cls!r} with a SentencePiece model is not "
                             f"supported; known: {sorted(SENTENCEPIECE_CLASSES)}")
        rule = SENTENCEPIECE_CLASSES[cls](files.config) if cls is not None else "model"
        path = files.path(SENTENCEPIECE_MODEL)
        backend = SentencePieceBackend(read_model(path), prepend=rule, source=path)
        pieces = backend.model_added_tokens() if rule != "model" else []
        return backend.with_added([*pieces, *tokens])
    path = json_file or files.path(TOKENIZER_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {TOKENIZER_JSON} or {SENTENCEPIECE_MODEL} in {files.directory}")
    with open(path, encoding="utf-8") as f:
        return TokenizersBackend(f.read(), tokens, source=path)


def bare_model_path(path: str) -> str | None:
    """The SentencePiece file to load bare: ``path`` when it is a file other than JSON, a directory's
    tokenizer.model when the directory has neither tokenizer config nor tokenizer.json."""
    if os.path.isfile(path):
        return None if path.endswith(".json") else path
    present = [os.path.isfile(os.path.join(path, n)) for n in (SENTENCEPIECE_MODEL, TOKENIZER_CONFIG, TOKENIZER_JSON)]
    return os.path.join(path, SENTENCEPIECE_MODEL) if present == [True, False, False] else None


def load_tokenizer(path: str, *, image_token: str | None = None) -> Tokenizer:
    """The tokenizer of a HF checkpoint directory, or of a tokenizer file.

    ``path``: a directory (``tokenizer.json`` and/or ``tokenizer.model`` with the tokenizer config files), a
    ``tokenizer.json`` (read with the config files beside it) or a bare SentencePiece ``.model`` file, alone or
    alone in its directory (``Tokenizer(path)``). ``image_token``: the image token's text when it is neither the
    config's ``image_token`` nor one of ``IMAGE_TOKEN_CANDIDATES``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer path {path!r} not found")
    bare = bare_model_path(path)
    if bare is not None:
        return Tokenizer(bare, image_token=image_token)
    directory, json_file = (path, None) if os.path.isdir(path) else (os.path.dirname(path), path)
    files = TokenizerFiles.read(directory)
    named = files.special_tokens.get("image_token")
    return Tokenizer(_backend(files, json_file), special_tokens={k: t.content for k, t in files.special_tokens.items()},
                     chat_template=files.chat_template,
                     image_token=image_token or (named.content if named is not None else None))


def train_tokenizer(texts: Iterable[str], out_path: str, vocab_size: int, user_symbols: Sequence[str]) -> str:
    """Trains a byte-fallback BPE SentencePiece model on `texts` and writes it to `out_path`.

    Deterministic: fixed trainer seed, one thread, input in the given order (no shuffling or
    sampling), so equal inputs give byte-identical model files. `vocab_size` is an upper bound for
    small corpora (hard_vocab_limit off) and must leave room for the 256 byte pieces, the 4 control
    pieces (<unk>=0, <s>=1, </s>=2, <pad>=3), `user_symbols` (always single pieces) and one piece
    per distinct character of `texts`. Returns `out_path`.
    """
    user_symbols = list(user_symbols)
    clash = sorted(set(user_symbols) & set(CONTROL_PIECES))
    if clash:
        raise ValueError(f"user_symbols must not redefine control pieces {clash}")
    if len(set(user_symbols)) != len(user_symbols):
        raise ValueError(f"user_symbols contain duplicates: {user_symbols}")
    sentences = [t for t in texts if t]
    if not sentences:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    characters = set().union(*map(set, sentences))
    minimum = 256 + len(CONTROL_PIECES) + len(user_symbols) + len(characters)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} too small: 256 byte pieces, {len(CONTROL_PIECES)} control "
                         f"pieces, {len(user_symbols)} symbols and {len(characters)} distinct characters "
                         f"need {minimum}")
    model = io.BytesIO()
    spm.set_random_generator_seed(0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, user_defined_symbols=user_symbols, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=3, hard_vocab_limit=False,
        num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as f:  # atomic for parallel workers
        f.write(model.getvalue())
    os.replace(f.name, out_path)
    return out_path


def default_tokenizer(cache_dir: str, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """The embedded default: a small vocabulary for EntityGrid-QA texts and the chat templates.

    Trained once and cached in `cache_dir` under a content hash of its inputs (texts, symbols,
    vocab size, trainer version), so changing the generator or templates retrains automatically.
    """
    texts = entitygrid_texts() + template_texts()
    symbols = [IMAGE_PLACEHOLDER] + [s for s in template_specials() if s not in CONTROL_PIECES]
    key = json.dumps([_TRAINER_VERSION, vocab_size, symbols, texts]).encode()
    path = os.path.join(cache_dir, f"default_{hashlib.sha256(key).hexdigest()[:16]}.model")
    if not os.path.isfile(path):
        train_tokenizer(texts, path, vocab_size, symbols)
    return Tokenizer(path)
