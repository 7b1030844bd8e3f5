"""Bare SentencePiece tokenizers exported for transformers (``vlm_jax.interop.tokenizer_export``): the exported
``tokenizer.model`` + ``tokenizer_config.json`` load with ``AutoTokenizer`` and encode >= 1,000 strings (unicode,
emoji, digits, whitespace runs, user-defined pieces inside text) to the ids of our ``Tokenizer(path)`` for a model
made by our trainer; models whose encoding no ``LlamaTokenizer`` setting reproduces are refused.
"""

import io

import pytest
import sentencepiece as spm
import transformers as T
from tokenizer_builders import SP_USER_PIECES, parity_strings, train_sentencepiece

from vlm_jax.data.tokenizer import Tokenizer, train_tokenizer
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.tokenizer_export import tokenizer_files

TEXTS = parity_strings(SP_USER_PIECES)


def _export(model_path: str, out) -> T.PreTrainedTokenizerBase:
    out.mkdir()
    for name, content in tokenizer_files(model_path, Tokenizer(model_path), None).items():
        (out / name).write_bytes(content)
    return T.AutoTokenizer.from_pretrained(str(out))


def _mismatches(ours: Tokenizer, hf) -> list[str]:
    return [t for t in TEXTS if ours.encode(t) != hf.encode(t, add_special_tokens=False)]


def test_trained_without_dummy_prefix(tmp_path):
    path = train_tokenizer(TEXTS[:400], str(tmp_path / "m.model"), 700, SP_USER_PIECES)
    hf = _export(path, tmp_path / "out")
    assert len(TEXTS) >= 1000 and not _mismatches(Tokenizer(path), hf)
    assert (hf.eos_token_id, hf.bos_token_id) == (2, 1)


@pytest.mark.parametrize("kind, match", [("llama_like", "add_dummy_prefix=True"), ("nfkc", "nmt_nfkc")])
def test_models_transformers_encodes_differently_are_refused(kind, match, tmp_path):
    """A Llama-like model (dummy prefix: SentencePiece puts "▁" before a leading piece or space, which no
    LlamaTokenizer setting does) and a normalising one are refused."""
    if kind == "llama_like":
        proto = train_sentencepiece()
    else:
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS[:300]), model_writer=model, vocab_size=400,
                                       model_type="bpe", byte_fallback=True, minloglevel=2, hard_vocab_limit=False)
        proto = model.getvalue()
    path = tmp_path / "m.model"
    path.write_bytes(proto)
    with pytest.raises(NotExportable, match=match):
        tokenizer_files(str(path), Tokenizer(str(path)), None)
