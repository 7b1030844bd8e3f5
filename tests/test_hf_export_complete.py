"""Complete HF exports (issue 10 item 6): tokenizer, generation and processor files beside the weights.

Per family (LLaVA, LLaVA-NeXT, InternVL) a tiny perturbed transformers model with a Llama-3-layout checkpoint
tokenizer (``tests/tokenizer_builders.py``, plus the family's image tokens) is saved, imported, and exported with the
run's tokenizer, chat template and tiling. transformers' ``AutoProcessor`` and ``AutoModelForImageTextToText`` load
the export; on an image + prompt the HF processor's ids and pixels equal ours, and HF's greedy answer equals
``generate_text`` (the function behind ``vlm-jax generate``) on the same directory.
"""

import json
import os

import hf_builders as hb
import ml_collections
import numpy as np
import pytest
import tokenizers
import torch
import transformers as T
from PIL import Image
from tokenizer_builders import write_llama3

from vlm_jax.data.tokenizer import load_tokenizer
from vlm_jax.evaluate.generate_text import generate_text, prompt_batch
from vlm_jax.evaluate.generation_setup import load_for_generation
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.hf_export import RunFiles, export_hf
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir

PROMPT = "What is in the image?"
NEW_TOKENS = 8
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                   "video_token": "<video>"}
# family -> (image tokens the tokenizer adds, tokenizer_config extra_special_tokens, tiling block, image (H, W))
CASES = {
    "llava": (["<image>"], {"image_token": "<image>"}, dict(kind="fixed", norm="clip"), (41, 27)),
    "llava_next": (["<image>"], {"image_token": "<image>"}, dict(kind="anyres", norm="clip", pinpoints=hb.PINPOINTS),
                   (30, 64)),
    "internvl": (list(INTERNVL_TOKENS.values()), INTERNVL_TOKENS,
                 dict(kind="internvl", norm="imagenet", max_tiles=4), (40, 90)),
}


def _tokenizer_dir(directory: str, image_tokens: list[str], extra: dict) -> str:
    """Llama-3-layout tokenizer with ``image_tokens`` added as specials (tokenizer.json and its config agree)."""
    write_llama3(directory)
    path = os.path.join(directory, "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(path)
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in image_tokens])
    tok.save(path)
    config_path = os.path.join(directory, "tokenizer_config.json")
    with open(config_path) as f:
        config = json.load(f)
    for t in image_tokens:
        config["added_tokens_decoder"][str(tok.token_to_id(t))] = dict(
            content=t, lstrip=False, normalized=False, rstrip=False, single_word=False, special=True)
    config["extra_special_tokens"] = extra
    with open(config_path, "w") as f:
        json.dump(config, f)
    return directory


def _hf_model(family: str, vocab: int, image_id: int):
    torch.manual_seed(3)
    text = dict(hb.TEXT, vocab_size=vocab, max_position_embeddings=1024)
    if family == "internvl":
        cfg = T.InternVLConfig(vision_config=T.InternVLVisionConfig(**hb.INTERNVL_V), text_config=T.Qwen2Config(**text),
                               image_token_id=image_id, image_seq_length=16, downsample_ratio=0.5)
        return hb.perturb(T.InternVLForConditionalGeneration(cfg), 3)
    common = dict(vision_config=T.CLIPVisionConfig(**hb.CLIP_V), text_config=T.LlamaConfig(**text),
                  image_token_index=image_id, vision_feature_layer=-2, vision_feature_select_strategy="default")
    if family == "llava":
        return hb.perturb(T.LlavaForConditionalGeneration(T.LlavaConfig(image_seq_length=64, **common)), 3)
    return hb.perturb(T.LlavaNextForConditionalGeneration(T.LlavaNextConfig(image_grid_pinpoints=hb.PINPOINTS,
                                                                            **common)), 3)


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    """(family, export directory, our generation config, the test image)."""
    family = request.param
    image_tokens, extra, tiling, size = CASES[family]
    root = tmp_path_factory.mktemp(family)
    tok_dir = _tokenizer_dir(str(root / "tokenizer"), image_tokens, extra)
    tokenizer = load_tokenizer(tok_dir)
    src, out = str(root / "src"), str(root / "export")
    _hf_model(family, tokenizer.vocab_size, tokenizer.image_token_id).save_pretrained(src)
    model = load_vlm_from_hf_dir(src)
    files = export_hf(model, out, run=RunFiles(tokenizer, tok_dir, "checkpoint", tiling))
    assert sorted(os.listdir(out)) == sorted(files)
    config = ml_collections.ConfigDict(dict(data=dict(tiling=tiling, template="checkpoint")))
    image = np.random.default_rng(5).integers(0, 256, (*size, 3), dtype=np.uint8)
    return family, out, config, image


class _InternVLImagesOnly(T.InternVLProcessor):
    """``InternVLProcessor`` without its video processor, which needs torchvision (not installable here)."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name != "video_processor":
            return super().check_argument_for_proper_class(argument_name, argument)
        return None


def _auto_processor(family: str, out: str):
    """``AutoProcessor.from_pretrained(out)``; for InternVL (``AutoProcessor`` would load its video processor) the
    processor of the exported ``processor_config.json`` over the image processor and tokenizer loaded by their Auto
    classes from the export."""
    if family != "internvl":
        return T.AutoProcessor.from_pretrained(out)
    with pytest.raises(ValueError, match="torchvision"):
        T.AutoProcessor.from_pretrained(out)
    with open(os.path.join(out, "processor_config.json")) as f:
        kwargs = json.load(f)
    assert kwargs.pop("processor_class") == "InternVLProcessor"
    return _InternVLImagesOnly(image_processor=T.AutoImageProcessor.from_pretrained(out),
                               tokenizer=T.AutoTokenizer.from_pretrained(out), video_processor=None, **kwargs)


def _our_prompt(family: str) -> str:
    """InternVL wraps the image in ``<img>…</img>`` (its processor and the original ``chat``); LLaVA does not."""
    return f"<img><image></img>\n{PROMPT}" if family == "internvl" else PROMPT


def _hf_inputs(processor, image: np.ndarray) -> dict:
    text = processor.tokenizer.apply_chat_template([{"role": "user", "content": f"<image>\n{PROMPT}"}],
                                                   tokenize=False, add_generation_prompt=True)
    if isinstance(processor, T.InternVLProcessor):  # its placeholder is the context token it expands
        text = text.replace("<image>", processor.image_token)
    # the rendered template already holds BOS, so no special tokens are added (as apply_chat_template(tokenize=True))
    return processor(images=Image.fromarray(image), text=text, add_special_tokens=False, return_tensors="pt")


def test_auto_classes_load_and_inputs_equal_ours(exported):
    family, out, config, image = exported
    processor = _auto_processor(family, out)
    model, info = T.AutoModelForImageTextToText.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert type(model).__name__.lower().startswith(family.replace("_", ""))
    inputs = _hf_inputs(processor, image)
    bundle = load_for_generation(out, config)
    batch = prompt_batch(bundle.tokenizer, bundle.processor, image, _our_prompt(family), "checkpoint")
    np.testing.assert_array_equal(batch["tokens"][0], inputs["input_ids"][0].numpy())
    pixels = inputs["pixel_values"].numpy().reshape(-1, 3, *batch["pixels"].shape[2:4]).transpose(0, 2, 3, 1)
    n = int(batch["tile_mask"][0].sum())
    np.testing.assert_allclose(batch["pixels"][0, :n], pixels[:n], atol=1e-6, rtol=0)
    assert processor.tokenizer.convert_tokens_to_ids("<|eot_id|>") in model.generation_config.eos_token_id


def test_hf_greedy_answer_equals_vlm_jax_generate(exported):
    family, out, config, image = exported
    processor = _auto_processor(family, out)
    model = T.AutoModelForImageTextToText.from_pretrained(out).eval()
    inputs = _hf_inputs(processor, image)
    with torch.no_grad():
        hf_ids = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    hf_ids = hf_ids.tolist()
    stops = set(model.generation_config.eos_token_id)
    if hf_ids and hf_ids[-1] in stops:
        hf_ids = hf_ids[:-1]
    bundle = load_for_generation(out, config)
    ours = generate_text(bundle.model, bundle.tokenizer, bundle.processor, image, _our_prompt(family), bundle.template,
                         max_new_tokens=NEW_TOKENS)
    assert len(hf_ids) > 2
    assert ours == processor.tokenizer.decode(hf_ids)


# family -> (a tiling transformers' processor cannot reproduce for the exported model, what the refusal names)
UNEXPRESSIBLE_TILING = {"llava": (dict(kind="internvl", max_tiles=1, norm="clip"), "fixed 1x1"),
                        "llava_next": (dict(kind="uhd", max_slices=2, norm="clip"), "anyres tiler"),
                        "internvl": (dict(kind="fixed", rows=2, cols=2, global_view="last", norm="imagenet"),
                                     "internvl tiler")}


def test_runs_transformers_cannot_reproduce_are_refused_before_writing(exported, tmp_path):
    family, out, config, _ = exported
    model, tokenizer = load_vlm_from_hf_dir(out), load_tokenizer(out)
    tiling, message = UNEXPRESSIBLE_TILING[family]
    with pytest.raises(NotExportable, match=message):
        export_hf(model, str(tmp_path / "tiling"), run=RunFiles(tokenizer, out, "checkpoint", tiling))
    if family == "llava_next":  # given pinpoints the run's tiler does not use
        with pytest.raises(NotExportable, match="pinpoints"):
            export_hf(model, str(tmp_path / "tiling"), image_grid_pinpoints=[[32, 64]],
                      run=RunFiles(tokenizer, out, "checkpoint", dict(config.data.tiling)))
    no_image_token = load_tokenizer(write_llama3(str(tmp_path / "plain_tokenizer")))
    with pytest.raises(NotExportable, match="no image token"):
        export_hf(model, str(tmp_path / "tokenizer"), run=RunFiles(no_image_token, str(tmp_path / "plain_tokenizer"),
                                                                  "checkpoint", dict(config.data.tiling)))
    if family == "internvl":  # the image tokens, but not declared for InternVLProcessor
        undeclared = load_tokenizer(_tokenizer_dir(str(tmp_path / "undeclared"), CASES[family][0], {}))
        with pytest.raises(NotExportable, match="start_image_token"):
            export_hf(model, str(tmp_path / "tokenizer"), run=RunFiles(undeclared, str(tmp_path / "undeclared"),
                                                                      "checkpoint", dict(config.data.tiling)))
    assert not os.path.exists(tmp_path / "tiling") and not os.path.exists(tmp_path / "tokenizer")


def test_reexport_replaces_the_run_files(exported, tmp_path):
    """A run exported over an earlier export with a SentencePiece tokenizer leaves no stale ``tokenizer.model``
    (AutoTokenizer would read it); a weights-only export leaves the directory's other files alone."""
    family, out, config, _ = exported
    model = load_vlm_from_hf_dir(out)
    (tmp_path / "tokenizer.model").write_bytes(b"an earlier export's tokenizer")
    export_hf(model, str(tmp_path))
    assert (tmp_path / "tokenizer.model").exists()
    files = export_hf(model, str(tmp_path), run=RunFiles(load_tokenizer(out), out, "checkpoint",
                                                         dict(config.data.tiling)))
    assert "tokenizer.json" in files and sorted(os.listdir(tmp_path)) == sorted(files)
