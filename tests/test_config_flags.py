"""Every key of every config in configs/ can be overridden through the real command-line path (ml_collections
``config_flags.DEFINE_config_file`` + :func:`vlm_jax.config_loading.parse_flags`, as ``vlm-jax`` does), those whose
default is None included; a mistyped key fails naming the key, its block and the closest valid keys."""

import glob
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags
from ml_collections.config_flags import config_path

from vlm_jax.config_loading import ConfigError, parse_flags
from vlm_jax.run_config import RunConfig
from vlm_jax.run_config.sources import EntityGridSourceConfig

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
TINY = {"hires_llava_7b", "inf_llava_8b", "sleighvl_2b", "slime_7b", "slime_8b"}
CASES = [(path, None) for path in CONFIGS] + [(p, "tiny") for p in CONFIGS if p[len("configs/"):-3] in TINY]

# Values for keys whose default is None, by type (a sub-block is given whole as a dict literal).
SAMPLES = {int: (7, "7"), float: (0.25, "0.25"), str: ("x", "x"), bool: (True, "True")}
SUB_BLOCKS = {
    "data.eval_source": ({"kind": "entitygrid", "split": "test", "size": 4, "canvas": 64},
                         "{'kind': 'entitygrid', 'split': 'test', 'size': 4, 'canvas': 64}"),
    "model.llm.rope_scaling": ({"kind": "linear", "factor": 2.0}, "{'kind': 'linear', 'factor': 2.0}"),
}


def parse(argv):
    """Parse ``argv`` with a fresh flag set exactly as the CLI does; returns the loaded config."""
    argv = ["vlm-jax", *argv]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values, sys_argv=argv)
    parse_flags(argv, flag_values)
    return flag_values.config


def leaves(node, path=""):
    """``(path, value)`` of every overridable leaf: ConfigDict keys and items of tuples of blocks."""
    if isinstance(node, (ConfigDict, dict)):
        for key in node.keys():  # keys that are not names (lr_scale's regexes, options' dotted fields) as ['key']
            name = (f"{path}.{key}" if path else key) if key.isidentifier() else f"{path}[{key!r}]"
            yield from leaves(node[key], name)
    elif isinstance(node, tuple) and node and all(isinstance(x, (ConfigDict, dict)) for x in node):
        for i, item in enumerate(node):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, node


def flag_text(value):
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


def config_arg(path, arg):
    return f"--config={path}" + (f":{arg}" if arg else "")


@pytest.mark.parametrize("path,arg", CASES)
def test_every_key_of_every_config_overrides_from_the_command_line(path, arg):
    config = parse([config_arg(path, arg)])
    argv, expected = [config_arg(path, arg)], {}
    for key, value in leaves(config):
        if value is None:  # a typed placeholder (e.g. train.stop_at) or a whole sub-block given as a dict literal
            field_type = config_path.get_type(key, config)
            value, text = SUB_BLOCKS[key] if field_type is ConfigDict else SAMPLES[field_type]
        else:
            text = flag_text(value)
        argv.append(f"--config.{key}={text}")
        expected[key] = value
    argv += ["--config.init.hf_dir=/ckpt/vlm", "--config.init.vision_dir=", "--config.init.llm_dir="]
    expected.update({"init.hf_dir": "/ckpt/vlm", "init.vision_dir": "", "init.llm_dir": ""})  # projector needs hf_dir
    assert {"train.stop_at", "train.peak_flops", "train.keep_every", "train.max_replicated"} <= set(expected)
    overridden = parse(argv)
    for key, value in expected.items():
        got = config_path.get_value(key, overridden)
        assert (got.to_dict() if isinstance(got, ConfigDict) else got) == value, key
    run = RunConfig.from_config(overridden)
    assert (run.train.stop_at, run.train.peak_flops, run.train.keep_every) == (7, 0.25, 7)
    if config.data.eval_source is None:
        assert run.data.eval_source == EntityGridSourceConfig(split="test", size=4, canvas=64)


@pytest.mark.parametrize("override,block,bad,hint", [
    ("train.log_evry=5", "config.train", "log_evry", "log_every"),
    ("trian.log_every=5", "config", "trian", "train"),
    ("data.source.canvs=32", "config.data.source", "canvs", "canvas"),
    ("train.recipe[0].stpes=3", "config.train.recipe[0]", "stpes", "steps"),
    ("model.llm.hiden_size=8", "config.model.llm", "hiden_size", "hidden_size"),
])
def test_a_mistyped_override_names_the_key_its_block_and_the_closest(override, block, bad, hint):
    with pytest.raises(ConfigError) as err:
        parse(["--config=configs/tiny_entitygrid.py", f"--config.{override}"])
    message = str(err.value)
    assert f"unknown {block} keys ['{bad}']" in message and f"did you mean '{hint}'?" in message, message


def test_a_mistyped_key_in_a_config_file_fails_at_load(tmp_path):
    """The config file's own keys are checked when it is loaded, before any override or model."""
    for block, line, hint in [
        ("config.train", "c.train.log_evry = 5", "log_every"),
        ("config.data.eval_source (kind 'entitygrid')", "c.data.eval_source.sze = 5", "size"),
        ("model config", "c.model.selct_layer = -1", "select_layer"),
    ]:
        path, base = tmp_path / "typo.py", os.path.join(ROOT, "configs", "tiny_entitygrid.py")
        path.write_text(
            f"import importlib.util\nspec = importlib.util.spec_from_file_location('base', {base!r})\n"
            "base = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(base)\n\n"
            f"def get_config(arg=None):\n    c = base.get_config()\n    {line}\n    return c\n")
        with pytest.raises(ConfigError) as err:
            parse([f"--config={path}"])
        bad = line.split("=")[0].strip().split(".")[-1]
        assert f"unknown {block} keys ['{bad}']" in str(err.value) and f"did you mean '{hint}'?" in str(err.value)


@pytest.mark.parametrize("override,message", [
    ("train.log_every=0", "config.train.log_every=0: must be > 0"),
    ("train.ckpt_every=0", "config.train.ckpt_every=0: must be > 0"),
    ("train.keep=0", "config.train.keep=0: must be > 0"),
    ("data.batch_size=0", "config.data.batch_size=0: must be > 0"),
    ("data.seq_buckets=(160, 128)", "config.data.seq_buckets=(160, 128): must be positive and strictly increasing"),
    ("data.template=chatmll", "config.data.template='chatmll' (did you mean 'chatml'?)"),
    ("data.source.kind=tfds", "unknown config.data.source (kind 'tfds') keys"),
])
def test_a_refused_value_fails_at_load_naming_it(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(["--config=configs/tiny_entitygrid.py", f"--config.{override}"])


@pytest.mark.parametrize("override,message", [
    ("train.recipe[1].data=captons", "config.train.recipe[1] (stage 'finetune') reads no data block: "
                                     "data='captons' (did you mean 'captions'?); known: ['captions', 'default']"),
    ("datasets.captions.batch_size=255", "config.datasets.captions.batch_size=255 is not divisible by "
                                         "config.datasets.captions.accum=2"),
    ("datasets.captions.template=plian", "config.datasets.captions.template='plian' (did you mean 'plain'?)"),
])
def test_a_stage_data_block_is_checked_at_load_naming_it(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(["--config=configs/inf_llava_8b.py", f"--config.{override}"])


def test_per_stage_data_paths_are_config_arguments():
    """``:captions=...`` and ``:data=...`` reach the blocks of the stages that read them."""
    config = parse(["--config=configs/inf_llava_8b.py:data=/d/sft.json,captions=/d/caps.json,images=/d/img",
                    "--config.datasets.captions.accum=4"])
    run = RunConfig.from_config(config)
    pretrain, finetune = run.train.recipe
    assert (run.stream(pretrain).source.path, run.stream(pretrain).source.image_root) == ("/d/caps.json", "/d/img")
    assert (run.stream(pretrain).template, run.stream(pretrain).batch_size, run.stream(pretrain).accum) == (
        "plain", 256, 4)
    assert (run.stream(finetune).source.path, run.stream(finetune).template, run.stream(finetune).batch_size) == (
        "/d/sft.json", "llama3", 128)


def test_a_sub_block_that_is_none_is_set_whole():
    with pytest.raises(ConfigError, match=r"config.data.eval_source is None, not a block.*--config.data.eval_source="):
        parse(["--config=configs/llava_15_7b.py", "--config.data.eval_source.size=5"])


def test_vlm_jax_command_reports_a_typo_and_exits():
    """The console entry point itself: exit status 1 and the message, before anything is built."""
    proc = subprocess.run([sys.executable, "-m", "vlm_jax.cli", "train", "--config=configs/tiny_entitygrid.py",
                           "--workdir=/nonexistent", "--config.train.log_evry=5"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "unknown config.train keys ['log_evry'] ('log_evry': did you mean 'log_every'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("path,arg", CASES)
def test_a_config_argument_it_does_not_read_fails(path, arg):
    """``:stepz=3`` (or a full-size argument such as ``data=`` given to a tiny variant) is refused, not ignored."""
    bad = ",".join(filter(None, [arg, "data=/x.json" if arg == "tiny" else "stepz=3"]))
    with pytest.raises(flags.Error, match="unknown config argument.*keys \\['(stepz|data)'\\]"):
        parse([f"--config={path}:{bad}"])
