"""SentencePiece tokenizer wrapper, deterministic trainer and the embedded default vocabulary.

Data contract (DESIGN.md "Data flow": text -> chat template -> SentencePiece): `Tokenizer.encode`
never adds BOS/EOS (templates place them); `image_token_id` is the id written into the
`num_image_tokens` visual slots (the model overwrites those positions, `image_slots` is the
authoritative mask). Trained models use identity normalisation, no dummy prefix and no whitespace
folding, so encoding template segments one by one and concatenating the ids decodes to exactly the
concatenated text; byte fallback lets any UTF-8 text encode without <unk>.
"""

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence

import sentencepiece as spm

from vlm_jax.data.entitygrid_text import entitygrid_texts
from vlm_jax.data.templates import IMAGE_PLACEHOLDER, template_specials, template_texts

CONTROL_PIECES = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0..3 of trained models
DEFAULT_VOCAB_SIZE = 512
_TRAINER_VERSION = 1  # bump when the trainer options below change (invalidates cached defaults)


class Tokenizer:
    """A SentencePiece model file with the ids the templates and the model need.

    For models trained elsewhere (e.g. a Llama/Vicuna `tokenizer.model`): a missing pad piece falls
    back to <unk> (LLaVA's choice for Vicuna); a missing "<image>" piece falls back to <unk> as the
    slot filler; template specials missing from the vocabulary are encoded as plain text.
    """

    def __init__(self, model_path: str):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"SentencePiece model not found: {model_path}")
        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        if self._sp.eos_id() < 0:
            raise ValueError(f"SentencePiece model {model_path} has no EOS piece")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        """BOS id, or -1 when the model has none (templates then start without BOS)."""
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id() if self._sp.pad_id() >= 0 else self._sp.unk_id()

    @property
    def image_token_id(self) -> int:
        return self._piece_id(IMAGE_PLACEHOLDER, default=self._sp.unk_id())

    def _piece_id(self, piece: str, default: int) -> int:
        piece_id = self._sp.piece_to_id(piece)
        if piece_id == self._sp.unk_id() and self._sp.id_to_piece(piece_id) != piece:
            return default
        return piece_id

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS/EOS)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._sp.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def special_ids(self, name: str) -> list[int]:
        """Ids of a template special ("<|im_start|>", "</s>", ...): its single piece when the
        vocabulary has it, else the encoding of its text."""
        piece_id = self._piece_id(name, default=-1)
        return [piece_id] if piece_id >= 0 else self.encode(name)


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
