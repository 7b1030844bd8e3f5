"""Tests for vlm_jax.data.tokenizer (SentencePiece wrapper, deterministic trainer, embedded default)."""

import os
import pathlib
import subprocess
import sys
import time

import pytest
import sentencepiece as spm

from vlm_jax.data.entitygrid import EntityGridQA
from vlm_jax.data.templates import template_texts
from vlm_jax.data.tokenizer import MissingImageTokenError, Tokenizer, default_tokenizer, train_tokenizer

CORPUS = ["USER: What object is located at the top-left of the image?",
          "ASSISTANT: red circle", "The quick brown fox jumps over the lazy dog.", "1234 + 5678 = 6912"] * 5
SYMBOLS = ["<image>", "<|im_start|>", "<|im_end|>"]
HARD_TEXTS = ["héllo wörld ☃ 日本語 🙂", "tabs\tand  double  spaces\n\nnewlines ", "  leading", "<unk> </s>",
              "\x00\x7f control", "zebra quartz jukebox"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return Tokenizer(train_tokenizer(CORPUS, str(tmp_path_factory.mktemp("tok") / "t.model"), 400, SYMBOLS))


def test_training_is_byte_identical(tmp_path):
    first = train_tokenizer(CORPUS, str(tmp_path / "a.model"), 400, SYMBOLS)
    second = train_tokenizer(CORPUS, str(tmp_path / "b.model"), 400, SYMBOLS)
    script = ("import sys; from vlm_jax.data.tokenizer import train_tokenizer; "
              f"train_tokenizer({CORPUS!r}, sys.argv[1], 400, {SYMBOLS!r})")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.model")], check=True,
                   env={**os.environ, "JAX_PLATFORMS": "cpu"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    data = [pathlib.Path(p).read_bytes() for p in (first, second, tmp_path / "c.model")]
    assert data[0] == data[1] == data[2]
    other = train_tokenizer(CORPUS[::-1] + ["extra text"], str(tmp_path / "d.model"), 400, SYMBOLS)
    assert pathlib.Path(other).read_bytes() != data[0]


def test_ids_and_symbols(trained):
    sp = spm.SentencePieceProcessor(model_file=trained.model_path)
    assert (sp.unk_id(), trained.bos_id, trained.eos_id, trained.pad_id) == (0, 1, 2, 3)
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert 300 <= trained.vocab_size <= 400
    assert trained.encode("<image>") == [trained.image_token_id] and sp.id_to_piece(trained.image_token_id) == "<image>"
    for symbol in SYMBOLS[1:]:
        assert len(trained.special_ids(symbol)) == 1 and trained.decode(trained.special_ids(symbol)) == symbol
    assert trained.special_ids("</s>") == [trained.eos_id]
    assert trained.encode("") == [] and trained.decode([]) == ""


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_any_text_round_trips_without_unknowns(trained, text):
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert 0 not in ids and all(0 <= i < trained.vocab_size for i in ids)
    assert trained.bos_id not in ids and trained.eos_id not in ids


def test_segments_concatenate_exactly(trained):
    for a in HARD_TEXTS + CORPUS[:4]:
        for b in (" ASSISTANT: ", "\n", "red", " "):
            assert trained.decode(trained.encode(a) + trained.encode(b)) == a + b


def test_loaded_tokenizer_without_specials(tmp_path):
    tok = Tokenizer(train_tokenizer(CORPUS, str(tmp_path / "plain.model"), 400, []))
    assert not tok.has_image_token and tok.image_token is None
    with pytest.raises(MissingImageTokenError, match="no image token"):
        tok.image_token_id  # noqa: B018
    ids = tok.special_ids("<|im_start|>")
    assert len(ids) > 1 and tok.decode(ids) == "<|im_start|>"
    added = tok.with_image_token()  # as AutoTokenizer.add_tokens(["<image>"], special_tokens=True)
    assert added.image_token == "<image>" and added.image_token_id == tok.vocab_size == added.vocab_size - 1
    assert added.encode("red<image>red") == tok.encode("red") + [added.image_token_id] + tok.encode("red")
    assert added.decode(added.encode("red<image>red")) == "red<image>red"
    assert added.with_image_token() is added and tok.vocab_size == added.vocab_size - 1


def test_pad_falls_back_to_unk_for_models_without_pad(tmp_path):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=str(tmp_path / "nopad"),
                                   vocab_size=60, pad_id=-1, minloglevel=2)
    tok = Tokenizer(str(tmp_path / "nopad.model"))
    assert tok.pad_id == 0 and tok.eos_id == 2 and not tok.has_image_token


def test_trainer_and_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(CORPUS, str(tmp_path / "x.model"), 300, SYMBOLS)
    with pytest.raises(ValueError, match="control"):
        train_tokenizer(CORPUS, str(tmp_path / "x.model"), 400, ["</s>"])
    with pytest.raises(ValueError, match="duplicates"):
        train_tokenizer(CORPUS, str(tmp_path / "x.model"), 400, ["<a>", "<a>"])
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer(["", ""], str(tmp_path / "x.model"), 400, [])
    with pytest.raises(FileNotFoundError):
        Tokenizer(str(tmp_path / "missing.model"))
    assert not (tmp_path / "x.model").exists()


def test_default_tokenizer_is_quick_cached_and_fits_its_texts(tmp_path):
    start = time.perf_counter()
    tok = default_tokenizer(str(tmp_path))
    assert time.perf_counter() - start < 10
    assert tok.vocab_size <= 512
    mtime = os.stat(tok.model_path).st_mtime_ns
    again = default_tokenizer(str(tmp_path))
    assert again.model_path == tok.model_path and os.stat(tok.model_path).st_mtime_ns == mtime
    assert os.listdir(tmp_path) == [os.path.basename(tok.model_path)]
    sp = spm.SentencePieceProcessor(model_file=tok.model_path)
    for text in EntityGridQA.texts() + template_texts():
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert not any(sp.is_byte(i) for i in ids if sp.id_to_piece(i) != "<0x0A>"), text
    assert len(tok.encode("purple hexagon")) <= 4
    assert len(tok.special_ids("<|eot_id|>")) == 1 and len(tok.special_ids("<|im_start|>")) == 1
    assert tok.encode("<image>") == [tok.image_token_id]
