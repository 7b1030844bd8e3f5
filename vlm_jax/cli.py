"""``vlm-jax <command> [flags]``: train | tiles | convert-data | compile | export | generate | eval.

    vlm-jax train --config=configs/tiny_entitygrid.py --workdir=/tmp/run [--config.train.log_every=10]
    vlm-jax tiles --image=photo.jpg --kind=internvl [--tile=448 --max_tiles=12 --tiler_option=thumbnail=False]
    vlm-jax convert-data --json=train.json --image_root=images/ --out=shards/ --num_shards=8
    vlm-jax compile --config=configs/internvl2_2b.py --topology=v5p:2x2x2 --mesh=data=1,fsdp=8,tensor=1 \
        [--batch_size=8 --seq_len=4096]   (exit status 1 when the step does not fit)
    vlm-jax export --checkpoint=/tmp/run --format=hf --out=/tmp/hf [--family=llava|llava_next|internvl \
        --dtype=bfloat16]   (weights + config, tokenizer, generation and processor files)
    vlm-jax generate --checkpoint=/tmp/run --image=photo.jpg --prompt="What is in the image?" \
        [--config=... --tokenizer=tokenizer.model --max_new_tokens=64 --temperature=0.7 --top_p=0.9]
    vlm-jax eval --checkpoint=/tmp/run --benchmark=textvqa --data=TextVQA_0.5.1_val.json --image_root=train_images \
        --out=/tmp/eval [--config=... --eval_batch_size=32 --max_new_tokens=64 --eval_size=432 (entitygrid)]
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vlm_jax.config_loading import ConfigError, parse_flags
from vlm_jax.evaluate.benchmark_registry import benchmark_help
from vlm_jax.tiling.registry import TILERS

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:args]).")
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, caches).")
flags.DEFINE_string("image", None, "tiles / generate: image file.")
flags.DEFINE_enum("kind", "internvl", list(TILERS), "tiles: tiler kind.")
flags.DEFINE_integer("tile", 448, "tiles: tile size in pixels.")
flags.DEFINE_integer("max_tiles", None, "tiles: shorthand for --tiler_option=max_tiles=N (internvl).")
flags.DEFINE_multi_string("tiler_option", [], "tiles: a tiler option NAME=VALUE (Python literal), repeatable; "
                          "unset options take the kind's defaults (vlm_jax/tiling/registry.py).")
flags.DEFINE_string("json", None, "convert-data: LLaVA-style conversation JSON/JSONL.")
flags.DEFINE_string("image_root", None,
                    "convert-data: folder the JSON's image paths are relative to; eval: see --benchmark.")
flags.DEFINE_string("out", None, "convert-data / export: output folder.")
flags.DEFINE_integer("num_shards", 1, "convert-data: number of ArrayRecord shards.")
flags.DEFINE_string("topology", None, "compile: TPU topology, e.g. v5p:2x2x2.")
flags.DEFINE_string("mesh", "", "compile: mesh size overrides, e.g. data=1,fsdp=8,tensor=1.")
flags.DEFINE_string("stage", None, "compile: recipe stage to compile (default: the last one).")
flags.DEFINE_integer("batch_size", None, "compile: global batch (default: the config's).")
flags.DEFINE_integer("seq_len", None, "compile: tokens per example (default: the longest bucket).")
flags.DEFINE_string("checkpoint", None, "export: training run directory (its newest checkpoint is exported).")
flags.DEFINE_enum("format", "hf", ["hf"], "export: output format (hf: transformers save_pretrained directory).")
flags.DEFINE_string("family", None, "export: HF family llava | llava_next | internvl (default: from the model).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "export: dtype of the written tensors.")
flags.DEFINE_string("prompt", None, "generate: the question about the image.")
flags.DEFINE_string("tokenizer", None, "generate: SentencePiece model (needed for a HF directory without one).")
flags.DEFINE_integer("max_new_tokens", 64, "generate: maximum answer length in tokens.")
flags.DEFINE_float("temperature", 0.0, "generate: 0 is greedy; > 0 samples.")
flags.DEFINE_integer("top_k", 0, "generate: keep the k most likely tokens when sampling (0: off).")
flags.DEFINE_float("top_p", 1.0, "generate: nucleus mass when sampling (1: off).")
flags.DEFINE_float("repetition_penalty", 1.0, "generate: > 1 discourages repeated ids (1: off).")
flags.DEFINE_integer("seed", 0, "generate: sampling seed.")
flags.DEFINE_multi_string("stop_string", [], "generate: cut the answer at this text (repeatable).")
flags.DEFINE_string("benchmark", None, f"eval: one of\n{benchmark_help()}")
flags.DEFINE_string("data", None, "eval: the benchmark's data (see --benchmark).")
flags.DEFINE_integer("eval_size", None, "eval: EntityGrid-QA test examples (default: the config's eval_source).")
flags.DEFINE_integer("eval_batch_size", None, "eval: examples per host and batch (default: the config's).")
FLAGS = flags.FLAGS


def _require(*names: str) -> None:
    missing = [n for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise app.UsageError(f"missing flags: {', '.join('--' + n for n in missing)}")


def cmd_train() -> None:
    _require("config", "workdir")
    from vlm_jax.train.loop import train

    scores = train(_CONFIG.value, FLAGS.workdir)
    print(json.dumps(scores, indent=1, default=float))
    if "position" in scores:
        print(f"\nheld-out EntityGrid-QA accuracy: position {scores['position']['all']:.3f}, "
              f"recognition {scores['recognition']['all']:.3f}, counting {scores['counting']['all']:.3f}, "
              f"overall {scores['overall']:.3f}")


def tiler_options(specs: list[str], max_tiles: int | None) -> dict:
    """``--tiler_option=NAME=VALUE`` flags (values are Python literals, else strings) and ``--max_tiles``."""
    options = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name:
            raise app.UsageError(f"--tiler_option={spec!r}: expected NAME=VALUE")
        if name in options:
            raise app.UsageError(f"--tiler_option {name} given twice")
        try:
            options[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[name] = text
    if max_tiles is not None:
        if "max_tiles" in options:
            raise app.UsageError("max_tiles given both as --max_tiles and as --tiler_option")
        options["max_tiles"] = max_tiles
    return options


def cmd_tiles() -> None:
    _require("image")
    from vlm_jax import tiling

    tiler = tiling.make_tiler(FLAGS.kind, tile=FLAGS.tile, **tiler_options(FLAGS.tiler_option, FLAGS.max_tiles))
    with open(FLAGS.image, "rb") as f:
        image = tiling.load_image(f.read())
    h, w = image.shape[:2]
    layout = tiler.plan(h, w)
    print(layout)
    print(f"{layout.num_views} views of {layout.tile}x{layout.tile} px from a {h}x{w} image; whole-image view at "
          f"index {layout.global_view_index} (tiler {FLAGS.kind} {dict(tiler.options)}: global view "
          f"{tiler.global_view!r}, at most {tiler.max_views} views)")


def cmd_convert_data() -> None:
    _require("json", "image_root", "out")
    from vlm_jax.data.convert import convert_llava_json

    paths = convert_llava_json(FLAGS.json, FLAGS.image_root, FLAGS.out, num_shards=FLAGS.num_shards)
    print("\n".join(paths))


def cmd_compile() -> None:
    _require("config", "topology")
    import jax

    jax.config.update("jax_platforms", "cpu")  # compile-only TPU devices; no TPU backend needed
    from vlm_jax.aot import compile_train_step, parse_mesh

    report = compile_train_step(_CONFIG.value, FLAGS.topology, parse_mesh(FLAGS.mesh), FLAGS.batch_size,
                                FLAGS.seq_len, FLAGS.stage)
    print(report.table())
    if not report.fits:
        raise SystemExit(1)


def cmd_export() -> None:
    _require("checkpoint", "out")
    from vlm_jax.interop.run_export import export_run

    print("\n".join(export_run(FLAGS.checkpoint, FLAGS.out, family=FLAGS.family, dtype=FLAGS.dtype)))


def cmd_generate() -> None:
    _require("checkpoint", "image", "prompt")
    import jax

    from vlm_jax import sharding
    from vlm_jax.evaluate.generate_text import generate_text
    from vlm_jax.evaluate.generation_setup import load_for_generation
    from vlm_jax.evaluate.sampling import SamplingConfig

    bundle = load_for_generation(FLAGS.checkpoint, _CONFIG.value, FLAGS.tokenizer)
    sampling = SamplingConfig(FLAGS.temperature, FLAGS.top_k, FLAGS.top_p, FLAGS.repetition_penalty)
    with open(FLAGS.image, "rb") as f:
        image = f.read()
    with sharding.use_mesh(bundle.mesh) if bundle.mesh is not None else contextlib.nullcontext():
        print(generate_text(bundle.model, bundle.tokenizer, bundle.processor, image, FLAGS.prompt, bundle.template,
                            max_new_tokens=FLAGS.max_new_tokens, sampling=sampling,
                            rng=jax.random.key(FLAGS.seed), stop_strings=FLAGS.stop_string))


def cmd_eval() -> None:
    _require("checkpoint", "benchmark", "out")
    from vlm_jax.evaluate.harness import evaluate_checkpoint

    summary = evaluate_checkpoint(FLAGS.checkpoint, FLAGS.benchmark, FLAGS.out, data=FLAGS.data,
                                  image_root=FLAGS.image_root, config=_CONFIG.value, tokenizer_path=FLAGS.tokenizer,
                                  eval_size=FLAGS.eval_size, batch_size=FLAGS.eval_batch_size,
                                  max_new_tokens=FLAGS.max_new_tokens)
    print(json.dumps(summary, indent=1))


COMMANDS = {"train": cmd_train, "tiles": cmd_tiles, "convert-data": cmd_convert_data, "compile": cmd_compile,
            "export": cmd_export, "generate": cmd_generate, "eval": cmd_eval}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: vlm-jax <{'|'.join(COMMANDS)}> [flags]")
    if len(argv) > 2:
        raise app.UsageError(f"unexpected arguments {argv[2:]}")
    logging.set_verbosity(logging.INFO)
    from vlm_jax.distributed import maybe_initialize

    maybe_initialize()
    COMMANDS[argv[1]]()


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """``absl.app``'s flag parser with the config checked (:func:`vlm_jax.config_loading.parse_flags`): a bad flag,
    an override of a key that does not exist, or a refused config ends the program with the message."""
    try:
        return parse_flags(argv)
    except (flags.Error, ConfigError) as err:
        sys.stderr.write(f"FATAL Flags parsing error: {err}\nPass --helpshort or --helpfull to see help on flags.\n")
        sys.exit(1)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
