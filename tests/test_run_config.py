"""The typed train / data blocks (vlm_jax/run_config): built from the ConfigDict, unknown keys and bad values
refused with the block's name, None keys overridable placeholders, and no jax / flax / model import."""

import ast
import dataclasses
import importlib.util
import os
import time

import pytest
from ml_collections import ConfigDict, FieldReference

from vlm_jax import config_blocks as blocks
from vlm_jax.config_util import config_block
from vlm_jax.run_config import (
    SOURCE_KINDS,
    DataConfig,
    DataStream,
    RunConfig,
    Stage,
    TrainConfig,
    source_from_dict,
)
from vlm_jax.run_config import build_data as build
from vlm_jax.run_config.sources import EntityGridSourceConfig, TfdsSourceConfig

ROOT = os.path.join(os.path.dirname(__file__), "..")
RECIPE = [dict(name="a", steps=2, train=[".*"], lr=1e-3)]
DATA = dict(source=dict(kind="llava_json", path="t.json", image_root="img"), tiling=dict(kind="internvl"),
            template="chatml", batch_size=4, seq_buckets=[64, 128])


def tiny_entitygrid():
    path = os.path.join(ROOT, "configs", "tiny_entitygrid.py")
    spec = importlib.util.spec_from_file_location("tiny_entitygrid", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("steps=4")


def test_typed_blocks_read_the_config_values():
    config = tiny_entitygrid()
    run = RunConfig.from_config(config)
    assert run.train.recipe == (Stage(name="scratch", steps=4, train=(".*",), lr=2e-3, warmup=0.05),)
    assert (run.train.z_loss, run.train.weight_decay, run.train.log_every, run.train.stop_at) == (1e-4, 0.01, 50, None)
    assert run.data.source == EntityGridSourceConfig(split="train", size=200_000, seed=0, canvas=64)
    assert run.data.eval_source == EntityGridSourceConfig(split="test", size=3240, seed=0, canvas=64)
    assert (run.data.batch_size, run.data.seq_buckets, run.data.template) == (32, (128, 160), "chatml")
    assert dict(run.data.tiling) == dict(kind="internvl", min_tiles=1, max_tiles=4, thumbnail=True, norm="imagenet")
    assert (run.mesh.data, run.mesh.fsdp, run.init.hf_dir) == (-1, 1, "")
    assert dict(run.datasets) == {} and run.stream(run.train.recipe[0]) is run.data
    with pytest.raises(TypeError):
        run.data.tiling["kind"] = "uhd"  # read-only, like the dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.train.log_every = 1


@pytest.mark.parametrize("key,value,message", [
    ("log_every", 0, "config.train.log_every=0: must be > 0"),
    ("ckpt_every", 0, "config.train.ckpt_every=0: must be > 0"),
    ("keep", 0, "config.train.keep=0: must be > 0"),
    ("keep_every", 0, "config.train.keep_every=0: must be > 0"),
    ("stop_at", 0, "config.train.stop_at=0: must be > 0"),
    ("max_replicated", 1.5, "config.train.max_replicated=1.5: must be in [0, 1]"),
    ("peak_flops", -1.0, "config.train.peak_flops=-1.0: must be > 0"),
    ("weight_decay", -0.1, "config.train.weight_decay=-0.1: must be >= 0"),
    ("log_every", 2.5, "config.train.log_every=2.5: expected int, got float"),
    ("allow_data_change", 1, "config.train.allow_data_change=1: expected bool, got int"),
    ("seed", True, "config.train.seed=True: expected int, got bool"),
    ("log_evry", 5, "unknown config.train keys ['log_evry'] ('log_evry': did you mean 'log_every'?)"),
])
def test_train_block_refuses(key, value, message):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict(dict(recipe=RECIPE, **{key: value}))
    assert message in str(err.value)


@pytest.mark.parametrize("stage,message", [
    (dict(name="a", steps=0, train=[".*"], lr=1.0), "stage 'a'.steps=0: must be > 0"),
    (dict(name="a", steps=1, train=[".*"], lr=-1.0), "stage 'a'.lr=-1.0: must be >= 0"),
    (dict(name="a", steps=1, train=[".*"], lr=1.0, warmup=2.0), "stage 'a'.warmup=2.0: must be in [0, 1]"),
    (dict(name="a", steps=1, train=[".*"], lr=1.0, lr_scal={}), "unknown config.train.recipe[0] keys ['lr_scal'] "
                                                                 "('lr_scal': did you mean 'lr_scale'?)"),
    (dict(name="a", steps=1, lr=1.0), "config.train.recipe[0] needs the keys ['train']"),
])
def test_recipe_stage_refuses(stage, message):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict(dict(recipe=[stage]))
    assert message in str(err.value)


def test_recipe_needs_stages_with_distinct_names():
    with pytest.raises(ValueError, match="at least one stage"):
        TrainConfig.from_dict(dict(recipe=[]))
    with pytest.raises(ValueError, match=r"stage names must be unique, got \['a', 'a'\]"):
        TrainConfig.from_dict(dict(recipe=RECIPE * 2))


@pytest.mark.parametrize("change,message", [
    (dict(batch_size=0), "config.data.batch_size=0: must be > 0"),
    (dict(accum=0), "config.data.accum=0: must be > 0"),
    (dict(batch_size=6, accum=4), "config.data.batch_size=6 is not divisible by config.data.accum=4"),
    (dict(seq_buckets=[128, 64]), "config.data.seq_buckets=(128, 64): must be positive and strictly increasing"),
    (dict(seq_buckets=[]), "config.data.seq_buckets=(): must be positive and strictly increasing"),
    (dict(worker_count=-1), "config.data.worker_count=-1: must be >= 0"),
    (dict(template="vicuna"), "config.data.template='vicuna' (did you mean 'vicuna_v1'?)"),
    (dict(tiling=dict(max_tiles=4)), "config.data.tiling must be a block with a 'kind'"),
    (dict(batch_sise=4), "unknown config.data keys ['batch_sise'] ('batch_sise': did you mean 'batch_size'?)"),
    (dict(source=dict(kind="json", path="x")), "config.data.source.kind='json'"),
    (dict(source=dict(kind="llava_json", path="x", image_rot="y")),
     "unknown config.data.source (kind 'llava_json') keys ['image_rot'] ('image_rot': did you mean 'image_root'?)"),
    (dict(source=dict(kind="llava_json", path="x", image_root="y", canvas=3)),
     "unknown config.data.source (kind 'llava_json') keys ['canvas']"),
    (dict(eval_source=dict(kind="tfds", name="x")), "config.data.eval_source (kind 'tfds') needs the keys ['split']"),
    (dict(source=dict(kind="entitygrid", split="train", size=4, n_entities=(3,))),
     "entitygrid source: n_entities must be 1, 2 or a tuple of them, got (3,)"),
])
def test_data_block_refuses(change, message):
    with pytest.raises(ValueError) as err:
        DataConfig.from_dict({**DATA, **change})
    assert message in str(err.value)


CAPTIONS = dict(source=dict(kind="llava_json", path="caps.json", image_root="img"), template="plain",
                batch_size=256, accum=2, seq_buckets=[64])


def _two_stage_config(**captions):
    config = tiny_entitygrid()
    config.datasets = dict(captions={**CAPTIONS, **captions})
    config.train.recipe = [dict(name="align", steps=2, train=["projector/.*"], lr=1e-3, data="captions"),
                           dict(name="sft", steps=2, train=[".*"], lr=1e-4, data="default")]
    return config


def test_each_stage_reads_the_data_block_it_names():
    run = RunConfig.from_config(_two_stage_config())
    align, sft = run.train.recipe
    assert run.stream(align) == DataStream(source=source_from_dict(CAPTIONS["source"]), template="plain",
                                           batch_size=256, accum=2, seq_buckets=(64,))
    assert run.stream(sft) is run.data
    # the resume fingerprint covers the running stage's block (and the shared tiling / tokenizer)
    assert run.data_identity(align)["stream"]["source"] == dict(kind="llava_json", path="caps.json", image_root="img")
    assert run.data_identity(align)["block"] == "captions" and run.data_identity(sft)["stream"]["batch_size"] == 32
    changed = RunConfig.from_config(_two_stage_config(template="chatml"))
    assert changed.data_identity(align) != run.data_identity(align)
    assert changed.data_identity(sft) == run.data_identity(sft)


@pytest.mark.parametrize("change,message", [
    (dict(recipe_data="captons"), "config.train.recipe[0] (stage 'align') reads no data block: data='captons' "
                                  "(did you mean 'captions'?); known: ['captions', 'default']"),
    (dict(template="plan"), "config.datasets.captions.template='plan' (did you mean 'plain'?)"),
    (dict(batch_size=255), "config.datasets.captions.batch_size=255 is not divisible by config.datasets.captions."
                           "accum=2"),
    (dict(tiling=dict(kind="fixed")), "unknown config.datasets.captions keys ['tiling']"),
    (dict(source=dict(kind="llava_json", path="x")), "config.datasets.captions.source (kind 'llava_json') needs"),
    (dict(name="default"), "config.datasets.default: the name 'default' is config.data's stream"),
])
def test_a_bad_data_block_or_name_is_refused_at_load(change, message):
    change = dict(change)
    recipe_data, name = change.pop("recipe_data", None), change.pop("name", None)
    config = _two_stage_config(**change)
    if recipe_data:
        config.train.recipe[0]["data"] = recipe_data
    if name:
        config.datasets = {name: CAPTIONS}
    with pytest.raises(ValueError) as err:
        RunConfig.from_config(config)
    assert message in str(err.value)


def test_every_stage_of_a_preset_lists_its_data_block():
    """``--config.train.recipe[i].data=NAME`` works for every stage: the key is always there."""
    assert [s["data"] for s in tiny_entitygrid().train.recipe] == ["default"]


def test_every_source_kind_parses_and_builds():
    """One typed block per kind, and the data layer builds each of them."""
    assert set(SOURCE_KINDS) == {"entitygrid", "llava_json", "array_record", "tfds"}
    assert set(build._SOURCES) == set(SOURCE_KINDS.values())
    assert source_from_dict(dict(kind="tfds", name="n", split="s")) == TfdsSourceConfig("n", "s", None)
    assert source_from_dict(dict(kind="entitygrid", split="test", size=3, n_entities=[2])).n_entities == (2,)  # JSON
    grid = build.build_source(dict(kind="entitygrid", split="test", size=3, canvas=64))
    assert len(grid) == 3 and grid[0]["id"] == build.build_source(source_from_dict(
        dict(kind="entitygrid", split="test", size=3, canvas=64)))[0]["id"]


def test_none_defaults_become_typed_placeholders():
    block = config_block(TrainConfig, "config.train", recipe=RECIPE)
    for key, field_type in [("stop_at", int), ("keep_every", int), ("max_replicated", float), ("peak_flops", float)]:
        assert isinstance(block[key], FieldReference) and block[key].get_type() is field_type, key
    config = ConfigDict(dict(train=block))
    config.train.stop_at = 3
    assert config.train.stop_at == 3
    with pytest.raises(TypeError):
        config.train.stop_at = "three"
    data = blocks.data_block(**DATA)
    assert isinstance(data["eval_source"], FieldReference) and data["eval_source"].get_type() is ConfigDict
    assert data["seq_buckets"] == (64, 128)  # lists become tuples: ml_collections overrides tuples, not lists
    with pytest.raises(ValueError, match=r"config.train needs the keys \['recipe'\]"):
        config_block(TrainConfig, "config.train")


def test_a_bad_value_stops_training_before_the_model_is_built(tmp_path):
    """``log_every=0`` used to raise ZeroDivisionError after the model was built and the first step compiled."""
    from vlm_jax.train.loop import train

    config = tiny_entitygrid()
    config.train.log_every = 0
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"config.train.log_every=0: must be > 0"):
        train(config, str(tmp_path))
    assert time.perf_counter() - start < 1.0 and os.listdir(tmp_path) == []


def _imported_modules(path: str) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_typed_blocks_import_no_jax_flax_or_model():
    """Host code (Grain workers, launchers) reads these: follow their imports inside vlm_jax, transitively."""
    todo, seen = ["vlm_jax.run_config"], set()
    while todo:
        name = todo.pop()
        path = os.path.join(ROOT, *name.split("."))
        path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
        if name in seen or not os.path.isfile(path):
            continue
        seen.add(name)
        for module in _imported_modules(path):
            top = module.split(".")[0]
            assert top not in ("jax", "flax", "optax", "orbax"), f"{name} imports {module}"
            assert module not in ("vlm_jax.model", "vlm_jax.model_config"), f"{name} imports {module}"
            if top == "vlm_jax":
                todo.append(module)
    assert {"vlm_jax.run_config.train", "vlm_jax.run_config.data", "vlm_jax.config_util"} <= seen


@pytest.mark.parametrize("init, message", [
    (dict(hf_dir="/ckpt/llava", vision_dir="/ckpt/clip"), "exclude each other"),
    (dict(projector=True), "hf_dir is empty"),
])
def test_init_block_refuses_conflicting_sources(init, message):
    from vlm_jax.run_config import InitConfig
    with pytest.raises(ValueError, match=message):
        InitConfig(**init)
