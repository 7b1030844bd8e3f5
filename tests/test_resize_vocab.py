"""Vocabulary growth for an added image token against transformers' ``resize_token_embeddings`` (mean resizing).

transformers samples the added rows from ``N(mean, 1e-9 · cov)`` with torch's RNG, so added rows are compared to
within that noise (``≈ 3e-5 · std`` of the rows, :func:`_assert_rows_close`); the distribution itself is checked
against numpy.
"""

import dataclasses
import json

import hf_builders as hb
import jax
import numpy as np
import pytest
import torch
import transformers as T
from flax import nnx
from tokenizer_builders import write_llama3

from vlm_jax.data.tokenizer import load_tokenizer
from vlm_jax.interop.hf_lm import load_decoder_from_hf_dir
from vlm_jax.interop.hf_vlm import load_base_weights, vlm_config_from_hf
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.lm.resize_vocab import (
    MEAN_RESIZING_EPSILON,
    added_rows,
    fit_vocab_to_tokenizer,
    grow_rows,
    load_with_grown_vocab,
    padded_vocab,
    resize_vocab,
)
from vlm_jax.model import VLM
from vlm_jax.nn.attention_mask import causal_mask


def _assert_rows_close(ours, ref, old_vocab: int) -> None:
    """Old rows exact; added rows within 6σ of the difference of two independent samples of N(mean, 1e-9 · cov)
    (σ = √(2 · 1e-9 · the largest variance of the old rows))."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    np.testing.assert_array_equal(ours[:old_vocab], ref[:old_vocab])
    sigma = np.sqrt(2 * MEAN_RESIZING_EPSILON * ref[:old_vocab].astype(np.float64).var(0).max())
    np.testing.assert_allclose(ours[old_vocab:], ref[old_vocab:], rtol=0, atol=6 * sigma)


def _hf_llm(cls, config_cls, seed=0, **config):
    torch.manual_seed(seed)
    fields = {**dict(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, max_position_embeddings=64), **config}
    return cls(config_cls(**fields)).eval()


def _ours(hf_model, path) -> Decoder:
    hf_model.save_pretrained(path)
    return load_decoder_from_hf_dir(str(path))


def _resized_decoder(decoder: Decoder, vocab_size: int, key=0) -> Decoder:
    params = resize_vocab(nnx.state(decoder, nnx.Param), vocab_size, key=jax.random.key(key), at=())
    grown = nnx.eval_shape(lambda: Decoder(decoder.cfg.replace(vocab_size=vocab_size), rngs=nnx.Rngs(0)))
    nnx.update(grown, params)
    return grown


def _logits(decoder: Decoder, tokens: np.ndarray) -> np.ndarray:
    x = decoder.embed(tokens)
    positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
    valid = np.ones(tokens.shape, bool)
    hidden, _ = decoder(x, positions=positions, mask=causal_mask(valid))
    return np.asarray(decoder.logits(hidden))


def _hf_logits(hf_model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return hf_model(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()


def _assert_logits_close(ours: np.ndarray, ref: np.ndarray, old_vocab: int) -> None:
    """Logits of the old vocabulary at 1e-5; of the added tokens at 1e-4: their head rows are independent samples
    (≤ 1e-5 apart per element) dotted with a final-norm hidden state of norm ≈ √D = 4."""
    np.testing.assert_allclose(ours[..., :old_vocab], ref[..., :old_vocab], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[..., old_vocab:], ref[..., old_vocab:], rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "qwen2_tied"])
def test_grown_decoder_matches_transformers(tmp_path, family):
    """Old rows exact, new rows within the sampling noise, logits over the grown vocabulary at 1e-5 (PD covariance:
    V=128 > D=16). Inputs are old ids: a sampled input row's noise is amplified by the layers (the exact mean case
    feeds new ids, :func:`test_not_positive_definite_gives_the_mean_as_transformers`)."""
    if family == "llama":
        hf = _hf_llm(T.LlamaForCausalLM, T.LlamaConfig)
    else:
        hf = _hf_llm(T.Qwen2ForCausalLM, T.Qwen2Config, tie_word_embeddings=True)
    ours = _resized_decoder(_ours(hf, tmp_path), 131)
    old_embed = hf.get_input_embeddings().weight.detach().numpy().copy()
    hf.resize_token_embeddings(131)

    embed = np.asarray(ours.embedder.embedding[...])
    ref_embed = hf.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(embed[:128], old_embed)
    _assert_rows_close(embed, ref_embed, 128)
    mean = old_embed.mean(0)
    assert np.abs(ref_embed[128:] - mean).max() > 0 and np.abs(embed[128:] - mean).max() > 0  # both sampled
    if family == "llama":
        assert ours.lm_head is not None
        _assert_rows_close(np.asarray(ours.lm_head.kernel[...]).T, hf.lm_head.weight.detach().numpy(), 128)
    else:
        assert ours.lm_head is None

    tokens = np.array([[1, 12, 5, 127, 64, 7], [127, 3, 99, 18, 2, 0]], np.int32)
    _assert_logits_close(_logits(ours, tokens), _hf_logits(hf, tokens), old_vocab=128)


def test_not_positive_definite_gives_the_mean_as_transformers(tmp_path):
    """V=8 ≤ D=16: the covariance is singular, Cholesky fails, every added row is the mean of the old rows."""
    hf = _hf_llm(T.LlamaForCausalLM, T.LlamaConfig, vocab_size=8)
    ours = _resized_decoder(_ours(hf, tmp_path), 11)
    old = hf.get_input_embeddings().weight.detach().numpy().copy()
    hf.resize_token_embeddings(11)
    ref = hf.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(ref[8:], np.broadcast_to(old.mean(0), (3, 16)), rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ours.embedder.embedding[...]), ref, rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ours.lm_head.kernel[...]).T, hf.lm_head.weight.detach().numpy(),
                               rtol=0, atol=1e-7)
    tokens = np.array([[1, 8, 5, 10, 9, 7], [7, 3, 9, 8, 2, 0]], np.int32)
    np.testing.assert_allclose(_logits(ours, tokens), _hf_logits(hf, tokens), rtol=0, atol=1e-5)


def test_added_rows_follow_mean_and_scaled_covariance():
    """Distribution check against numpy: sample mean ≈ row mean, sample covariance ≈ 1e-9 · the rows' covariance."""
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(64, 4)) @ rng.normal(size=(4, 4))).astype(np.float32)
    rows = np.asarray(added_rows(jax.numpy.asarray(table), 40_000, jax.random.key(3)), np.float64)
    mean = table.astype(np.float64).mean(0)
    cov = np.cov(table.astype(np.float64), rowvar=False, bias=True)  # transformers divides by V
    scale = np.sqrt(MEAN_RESIZING_EPSILON)
    np.testing.assert_allclose(rows.mean(0), mean, rtol=0, atol=4 * scale * np.sqrt(cov.diagonal().max() / 4e4) + 1e-6)
    sample_cov = np.cov((rows - mean) / scale, rowvar=False, bias=True)
    np.testing.assert_allclose(sample_cov, cov, rtol=0, atol=0.05 * np.abs(cov).max())


def test_added_image_token_and_padding_match_transformers(tmp_path):
    """A Llama-3-style tokenizer without an image token: ``with_image_token()`` + ``fit_vocab_to_tokenizer(pad 64)``
    gives the same vocabulary, image id, tables and logits as ``add_tokens`` + ``resize_token_embeddings(
    pad_to_multiple_of=64)`` (text ids as inputs: the image token's input row is overwritten by visual features)."""
    tok_dir = write_llama3(str(tmp_path / "tok"))
    hf_tok = T.AutoTokenizer.from_pretrained(tok_dir)
    ours_tok = load_tokenizer(tok_dir)
    assert not ours_tok.has_image_token
    hf = _hf_llm(T.LlamaForCausalLM, T.LlamaConfig, vocab_size=len(hf_tok))
    decoder = _ours(hf, tmp_path / "lm")

    hf_tok.add_tokens(["<image>"], special_tokens=True)
    hf.resize_token_embeddings(len(hf_tok), pad_to_multiple_of=64)
    ours_tok = ours_tok.with_image_token()
    params = fit_vocab_to_tokenizer(nnx.state(decoder, nnx.Param), ours_tok, key=jax.random.key(0),
                                    pad_to_multiple_of=64, at=())
    vocab = hf.get_input_embeddings().weight.shape[0]
    assert vocab % 64 == 0 and vocab > len(hf_tok) - 1 >= decoder.cfg.vocab_size
    assert ours_tok.image_token_id == hf_tok.convert_tokens_to_ids("<image>") == decoder.cfg.vocab_size
    grown = nnx.eval_shape(lambda: Decoder(decoder.cfg.replace(vocab_size=vocab), rngs=nnx.Rngs(0)))
    nnx.update(grown, params)
    assert hf_tok.encode("red<image>", add_special_tokens=False)[-1] == ours_tok.image_token_id
    for ours_table, ref in ((grown.embedder.embedding[...], hf.get_input_embeddings().weight),
                            (grown.lm_head.kernel[...].T, hf.lm_head.weight)):
        _assert_rows_close(ours_table, ref.detach().numpy(), decoder.cfg.vocab_size)
    tokens = np.array([ours_tok.encode("red and blue circles")], np.int32)
    _assert_logits_close(_logits(grown, tokens), _hf_logits(hf, tokens), old_vocab=decoder.cfg.vocab_size)


def test_loading_a_released_vlm_into_a_grown_vocabulary(tmp_path):
    """``load_base_weights`` of a llava-hf checkpoint (128 rows) into a VLM built at 192 rows: the tables match
    transformers' ``resize_token_embeddings(192)`` and the rows equal :func:`resize_vocab`'s for the same key."""
    hf = hb.build_llava()
    hf.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        cfg = vlm_config_from_hf(json.load(f))
    cfg = dataclasses.replace(cfg, llm=cfg.llm.replace(vocab_size=192))
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    loaded = load_with_grown_vocab(model.llm, lambda: load_base_weights(model, str(tmp_path)), 128,
                                   key=jax.random.key(5))
    assert loaded[:2] == ["vision_tower", "language_model"]

    small = load_decoder_from_hf_dir(_language_model_dir(hf, tmp_path / "lm"))
    same_key = resize_vocab(nnx.state(small, nnx.Param), 192, key=jax.random.key(5), at=())
    np.testing.assert_array_equal(model.llm.embedder.embedding[...], same_key["embedder"]["embedding"][...])
    np.testing.assert_array_equal(model.llm.lm_head.kernel[...], same_key["lm_head"]["kernel"][...])
    hf.resize_token_embeddings(192)
    _assert_rows_close(model.llm.embedder.embedding[...], hf.get_input_embeddings().weight.detach().numpy(), 128)
    _assert_rows_close(model.llm.lm_head.kernel[...].T, hf.get_output_embeddings().weight.detach().numpy(), 128)


def _language_model_dir(hf_vlm, path) -> str:
    """The LLM of ``hf_vlm`` as a LlamaForCausalLM directory (same weights)."""
    lm = T.LlamaForCausalLM(hf_vlm.config.text_config)
    lm.model.load_state_dict(hf_vlm.model.language_model.state_dict())
    lm.lm_head.load_state_dict(hf_vlm.lm_head.state_dict())
    lm.save_pretrained(path)
    return str(path)


def test_tables_large_enough_are_kept_and_shrinking_is_refused():
    cfg = LMConfig(vocab_size=48, hidden_size=8, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=4, mlp_dim=16)
    params = nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))), nnx.Param)

    class Vocab:  # llava-hf: 32002 tokenizer ids in 32064 rows
        vocab_size = 40

    assert fit_vocab_to_tokenizer(params, Vocab(), key=jax.random.key(0), at=()) is params
    with pytest.raises(ValueError, match="cannot shrink"):
        grow_rows(np.zeros((48, 4), np.float32), 40, jax.random.key(0))
    with pytest.raises(KeyError, match="no decoder embedding"):
        resize_vocab(params, 50, key=jax.random.key(0), at=("llm",))
    assert padded_vocab(32002, 64) == 32064 and padded_vocab(128257, 64) == 128320 and padded_vocab(7, None) == 7
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        padded_vocab(7, 0)



def test_trainer_start_from_a_released_vlm_grows_its_vocabulary(tmp_path):
    """The trainer's fresh start (``config.init.hf_dir``) loads a 128-row llava-hf checkpoint into a model built at
    192 rows exactly as ``load_with_grown_vocab`` with the run's seed as key does."""
    import types

    from vlm_jax import sharding
    from vlm_jax.run_config import InitConfig
    from vlm_jax.state.params import abstract_params
    from vlm_jax.train.loop import _initial_params

    hf = hb.build_llava()
    hf.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        cfg = vlm_config_from_hf(json.load(f))
    cfg = dataclasses.replace(cfg, llm=cfg.llm.replace(vocab_size=192))
    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    graphdef, _ = abstract_params(cfg, mesh)
    run = types.SimpleNamespace(train=types.SimpleNamespace(seed=5), init=InitConfig(hf_dir=str(tmp_path)))
    params = _initial_params(run, cfg, graphdef, mesh)
    small = load_decoder_from_hf_dir(_language_model_dir(hf, tmp_path / "lm"))
    same_key = resize_vocab(nnx.state(small, nnx.Param), 192, key=jax.random.key(5), at=())
    np.testing.assert_array_equal(np.asarray(params["llm"]["embedder"]["embedding"][...]),
                                  np.asarray(same_key["embedder"]["embedding"][...]))
