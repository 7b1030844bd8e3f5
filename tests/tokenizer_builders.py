"""Tiny checkpoint tokenizers in the released layouts, built here because nothing can be downloaded.

* ``write_llama3``: a byte-level BPE trained with ``tokenizers`` under Llama-3's pre-tokenizer (its split regex,
  then bytes), ``ignore_merges``, Llama-3's special tokens after the base vocabulary (begin/end of text, reserved
  specials, start/end header, eot) and the Meta-Llama-3-8B-Instruct ``tokenizer_config.json`` layout with its
  chat template (``PreTrainedTokenizerFast``, ``eos_token = <|eot_id|>``).
* ``write_sentencepiece``: a SentencePiece BPE model trained like Llama's (identity normalisation, dummy prefix,
  no whitespace folding, byte fallback, split digits) with user-defined pieces, and two configs: Vicuna-style
  (``LlamaTokenizer``, specials in the old ``{"__type": "AddedToken"}`` form, ``special_tokens_map.json``,
  ``added_tokens.json`` with llava's ``<image>``, a Vicuna v1 chat template) and InternLM2-style (InternVL2's
  ``tokenizer_config.json``: ``InternLM2Tokenizer``, ``added_tokens_decoder`` with ``<img>``, ``</img>``,
  ``<IMG_CONTEXT>`` after the model's pieces, ChatML template with InternVL's default system prompt).
* ``parity_strings``: >= 1,000 strings mixing words, unicode, emoji, digits, whitespace runs and special tokens.
"""

import io
import json
import os
import random

import sentencepiece as spm
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions.")
VICUNA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set system = \"" + VICUNA_SYSTEM + "\" %}"
    "{% set loop_messages = messages %}{% endif %}{{ bos_token + system + ' ' }}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
    "{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
INTERNVL_SYSTEM = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
                   "英文名叫InternVL, 是一个有用无害的人工智能助手。")
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + INTERNVL_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SP_USER_PIECES = ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>"]
INTERNVL_ADDED = ["<img>", "</img>", "<IMG_CONTEXT>"]

_WORDS = ("the quick brown fox jumps over lazy dog what is at top left of image red circle blue square "
          "assistant user system hello world tokenizer don't I'M we'll they've you're it's "
          "naïve café façade Straße résumé 東京 日本語 中文 한국어 русский العربية हिन्दी ελληνικά").split()
_SYMBOLS = ["🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "✨", "©", "½", "→", "∑", "\u00a0", "\u3000", "\u200b", "ﬁ", "Å", "Å"]
_SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t \t", "    \n"]
_NUMBERS = ["0", "7", "42", "123", "2024", "31415926535", "1,000", "3.14", "-17", "1e10", "0x1F"]


def _fragment(rng: random.Random, specials: list[str]) -> str:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(_WORDS)
    if kind < 0.60:
        return rng.choice(_SPACES)
    if kind < 0.72:
        return rng.choice(_NUMBERS)
    if kind < 0.82:
        return rng.choice(_SYMBOLS)
    if kind < 0.90:
        return rng.choice(".,;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`")
    return rng.choice(specials) if specials else "<|"


def parity_strings(specials: list[str], count: int = 1200, seed: int = 0) -> list[str]:
    """``count`` strings of 0-24 random fragments (plus the empty and whitespace-only edge cases)."""
    rng = random.Random(seed)
    near_misses = [s[:-1] for s in specials] + [s.upper() for s in specials]
    strings = ["", " ", "\n", "  leading", "trailing  ", *specials, *(f" {s} " for s in specials), *near_misses]
    while len(strings) < count:
        strings.append("".join(_fragment(rng, specials) for _ in range(rng.randint(1, 24))))
    return strings


def _corpus(seed: int) -> list[str]:
    return parity_strings([], count=600, seed=seed)


def _write_json(directory: str, name: str, value) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)


def _added(content: str, special: bool = True) -> dict:
    return dict(content=content, lstrip=False, normalized=not special, rstrip=False, single_word=False,
                special=special)


def write_llama3(directory: str, vocab_size: int = 600) -> str:
    """A Llama-3-layout checkpoint tokenizer in ``directory`` (module docstring); returns ``directory``."""
    os.makedirs(directory, exist_ok=True)
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.train_from_iterator(_corpus(1), trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    base = tok.get_vocab_size()
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False) for s in LLAMA3_SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    tok.save(os.path.join(directory, "tokenizer.json"))
    _write_json(directory, "tokenizer_config.json", {
        "added_tokens_decoder": {str(base + i): _added(s) for i, s in enumerate(LLAMA3_SPECIALS)},
        "bos_token": "<|begin_of_text|>", "chat_template": LLAMA3_TEMPLATE, "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>", "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 8192, "tokenizer_class": "PreTrainedTokenizerFast"})
    return directory


def train_sentencepiece(vocab_size: int = 420) -> bytes:
    """A Llama-like SentencePiece BPE model with ``SP_USER_PIECES`` as user-defined pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(2)), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, user_defined_symbols=SP_USER_PIECES, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
    return model.getvalue()


def _old_style(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_sentencepiece(directory: str, model: bytes, style: str, **config) -> str:
    """``style`` "vicuna" or "internlm2" (module docstring); ``config`` overrides tokenizer_config entries."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(model)
    size = spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    if style == "vicuna":
        settings = {"add_bos_token": True, "add_eos_token": False, "bos_token": _old_style("<s>"),
                    "clean_up_tokenization_spaces": False, "eos_token": _old_style("</s>"), "legacy": False,
                    "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
                    "tokenizer_class": "LlamaTokenizer", "unk_token": _old_style("<unk>"),
                    "chat_template": VICUNA_TEMPLATE}
        _write_json(directory, "special_tokens_map.json", {
            "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False}, "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"})
        _write_json(directory, "added_tokens.json", {"<image>": size})
    elif style == "internlm2":
        sp = spm.SentencePieceProcessor(model_proto=model)
        decoder = {str(sp.piece_to_id(p)): _added(p) for p in ["<unk>", "<s>", "</s>", *SP_USER_PIECES]}
        decoder.update({str(size + i): _added(p) for i, p in enumerate(INTERNVL_ADDED)})
        settings = {"added_tokens_decoder": decoder, "additional_special_tokens": SP_USER_PIECES + INTERNVL_ADDED,
                    "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
                    "bos_token": "<s>", "chat_template": CHATML_TEMPLATE, "clean_up_tokenization_spaces": False,
                    "eos_token": "</s>", "model_max_length": 8192, "pad_token": "</s>",
                    "tokenizer_class": "InternLM2Tokenizer", "unk_token": "<unk>"}
    else:
        raise ValueError(style)
    _write_json(directory, "tokenizer_config.json", {**settings, **config})
    return directory
