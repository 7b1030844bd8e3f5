"""``vlm-jax generate`` end to end on a tiny trained run (2 steps of configs/tiny_entitygrid.py, shrunk),
and the notebook API :func:`generate_text` behind it."""

import hf_builders as hb
import jax
import numpy as np
import pytest
from PIL import Image
from test_train import tiny_train_config

from vlm_jax import cli, sharding
from vlm_jax.data.templates import tokenize_conversation
from vlm_jax.evaluate.generate_text import generate_text, prompt_batch
from vlm_jax.evaluate.generation_setup import load_for_generation
from vlm_jax.train.loop import train

PROMPT = "What is in the top left corner?"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    train(tiny_train_config(steps=2), workdir)
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("img") / "image.png"
    Image.fromarray(image).save(path)
    return workdir, str(path), image


def test_cli_prints_the_answer_of_generate_text(run, capsys):
    workdir, image_path, image = run
    argv = cli.FLAGS(["vlm-jax", "generate", f"--checkpoint={workdir}", f"--image={image_path}",
                      f"--prompt={PROMPT}", "--max_new_tokens=6"])
    try:
        cli.main(argv)
    finally:
        cli.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    assert printed.endswith("\n")

    bundle = load_for_generation(workdir)
    assert bundle.template == "chatml" and bundle.mesh is not None
    with sharding.use_mesh(bundle.mesh):
        from_array = generate_text(bundle.model, bundle.tokenizer, bundle.processor, image, PROMPT, bundle.template,
                                   max_new_tokens=6)
    assert isinstance(from_array, str) and printed == from_array + "\n"


def test_prompt_batch_is_the_templates_generation_prompt(run):
    workdir, _, image = run
    bundle = load_for_generation(workdir)
    batch = prompt_batch(bundle.tokenizer, bundle.processor, image, PROMPT, "chatml")
    views, grid = bundle.processor.process(image)
    n_image = bundle.processor.num_image_tokens(len(views), grid, image.shape[:2])
    ref = tokenize_conversation(bundle.tokenizer, "chatml", [{"from": "human", "value": "<image>\n" + PROMPT}],
                                n_image)
    np.testing.assert_array_equal(batch["tokens"][0], ref.tokens)
    assert batch["valid"].all() and batch["image_slots"].sum() == n_image
    text = bundle.tokenizer.decode(ref.tokens[~ref.image_slots])
    assert text.endswith(PROMPT + "<|im_end|>\n<|im_start|>assistant\n"), text  # the answer starts next
    np.testing.assert_array_equal(batch["tile_mask"][0], np.arange(bundle.processor.max_views) < len(views))


def test_hf_directory_needs_config_and_tokenizer(tmp_path):
    hb.build_llava(seed=0).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--config"):
        load_for_generation(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--tokenizer"):
        load_for_generation(str(tmp_path), tiny_train_config())
    with pytest.raises(FileNotFoundError, match="neither"):
        load_for_generation(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="uint8"):
        prompt_batch(None, None, np.zeros((4, 4, 3), np.float32), PROMPT, "chatml")
    assert jax.devices()  # the 8-device conftest is active
