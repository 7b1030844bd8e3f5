"""The tiler registry (vlm_jax/tiling/registry.py): lookups, option defaults and refusals, the processor's
refusals against the model config, and every kind's declared global-view position and view budget checked
against the pixels its planner actually produces (whole-image references made here with PIL)."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vlm_jax import cli, presets
from vlm_jax.data.processor import ImageProcessor
from vlm_jax.model import VLMConfig
from vlm_jax.tiling import TILERS, crop_views, make_tiler, normalize, plan_anyres
from vlm_jax.tiling.layout import KINDS

TILE = 16
CLIP_MEAN_RGB = (122, 116, 104)  # LLaVA's expand2square fill: int(255 * CLIP mean)
SIZES = [(40, 70), (70, 40), (33, 33), (100, 20), (20, 100), (60, 130), (12, 12), (80, 80), (16, 200), (9, 48)]


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _stretched(image):
    return np.asarray(Image.fromarray(image).resize((TILE, TILE), Image.Resampling.BICUBIC))


def _squared(image, fill):
    """LLaVA's expand2square (image pasted centred on a ``fill`` square), then resized to the tile."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = Image.new("RGB", (side, side), fill)
    square.paste(Image.fromarray(image), ((side - width) // 2, (side - height) // 2))
    return np.asarray(square.resize((TILE, TILE), Image.Resampling.BICUBIC))


# (kind, options, whole-image reference): every global-view position, both global modes, both "none" kinds.
CASES = [
    ("internvl", dict(max_tiles=4), _stretched),
    ("internvl", dict(min_tiles=2, max_tiles=6), _stretched),
    ("internvl", dict(max_tiles=4, thumbnail=False), _stretched),
    ("anyres", {}, _stretched),
    ("anyres", dict(pinpoints=[[16, 16], [16, 32]]), _stretched),
    ("uhd", dict(max_slices=3), _stretched),
    ("uhd", dict(max_slices=4, global_mode="pad"), lambda image: _squared(image, (0, 0, 0))),
    ("fixed", dict(rows=2, cols=2, global_view="last"), _stretched),
    ("fixed", dict(rows=1, cols=3, global_view="first"), _stretched),
    ("fixed", dict(rows=2, cols=1), _stretched),
    ("dual", dict(n=2), lambda image: _squared(image, CLIP_MEAN_RGB)),
]


def _whole_image_positions(views, whole):
    return [i for i, view in enumerate(views) if np.array_equal(view, whole)]


def test_registry_holds_every_layout_kind_with_its_defaults():
    assert set(TILERS) == set(KINDS)
    assert dict(make_tiler("internvl", tile=448).options) == dict(min_tiles=1, max_tiles=12, thumbnail=True)
    assert dict(make_tiler("uhd", tile=336).options) == dict(max_slices=6, global_mode="stretch")
    assert dict(make_tiler("fixed", tile=336).options) == dict(rows=1, cols=1, global_view="none")
    assert dict(make_tiler("dual", tile=336).options) == dict(n=3)
    # LLaVA-NeXT's released image_grid_pinpoints (llava-v1.6 config.json), scaled with the tile
    released = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    assert make_tiler("anyres", tile=336).options["pinpoints"] == released
    assert make_tiler("anyres", tile=16).options["pinpoints"] == [[h // 21, w // 21] for h, w in released]
    paper_presets = {"internvl": (13, "last"), "anyres": (5, "first"), "uhd": (8, "first"), "fixed": (1, "none"),
                     "dual": (19, "last")}
    for kind, (max_views, global_view) in paper_presets.items():
        tiler = make_tiler(kind, tile=336)
        assert (tiler.max_views, tiler.global_view) == (max_views, global_view), kind


def test_unknown_kind_and_option_and_bad_values_are_refused():
    with pytest.raises(ValueError, match=r"unknown tiler kind 'tiles'; known: internvl, anyres, uhd, fixed, dual"):
        make_tiler("tiles", tile=16)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_slices'\] for tiler 'internvl'; known: "
                                         r"\['max_tiles', 'min_tiles', 'thumbnail'\]"):
        make_tiler("internvl", tile=16, max_slices=3)
    with pytest.raises(ValueError, match=r"tiler 'internvl': option min_tiles=5 must be <= max_tiles=4"):
        make_tiler("internvl", tile=16, min_tiles=5, max_tiles=4)
    with pytest.raises(ValueError, match=r"tiler 'internvl': option thumbnail='yes' must be a bool"):
        make_tiler("internvl", tile=16, thumbnail="yes")
    with pytest.raises(ValueError, match=r"tiler 'anyres': option pinpoints=\[\[16, 20\]\] must be a non-empty list "
                                         r"of \[h, w\] multiples of the tile 16"):
        make_tiler("anyres", tile=16, pinpoints=[[16, 20]])
    with pytest.raises(ValueError, match=r"tiler 'uhd': option max_slices=1 must be >= 2"):
        make_tiler("uhd", tile=16, max_slices=1)
    with pytest.raises(ValueError, match=r"tiler 'uhd': option global_mode='crop' must be one of \('stretch', 'pad'\)"):
        make_tiler("uhd", tile=16, global_mode="crop")
    with pytest.raises(ValueError, match=r"tiler 'fixed': option global_view='middle' must be one of"):
        make_tiler("fixed", tile=16, global_view="middle")
    with pytest.raises(ValueError, match=r"tiler 'dual': option n=0 must be a positive int"):
        make_tiler("dual", tile=16, n=0)


@pytest.mark.parametrize("kind,options,whole", CASES, ids=[f"{k}-{o}" for k, o, _ in CASES])
def test_declared_global_view_is_where_the_planner_puts_the_whole_image(kind, options, whole):
    tiler = make_tiler(kind, tile=TILE, **options)
    counts = []
    for seed, (height, width) in enumerate(SIZES):
        image = _image(height, width, seed)
        layout = tiler.plan(height, width)
        views = crop_views(image, layout)
        counts.append(len(views))
        found = _whole_image_positions(views, whole(image))
        if len(views) == 1:  # an InternVL / fixed 1x1 grid: the only view is the stretched image, no extra view
            assert kind in ("internvl", "fixed") and found == [0] and layout.global_view_index == -1
            continue
        index = {"first": 0, "last": len(views) - 1, "none": -1}[tiler.global_view]
        assert layout.global_view_index == index
        if layout.rows * layout.cols > 1:
            assert found == ([index] if index >= 0 else []), (height, width)
        else:  # a 1x1 canvas of a square image: the one tile equals the whole-image view
            assert index in found, (height, width)
    assert max(counts) == tiler.max_views  # the declared budget is an upper bound that images reach


def test_a_single_tile_internvl_layout_has_no_global_view():
    tiler = make_tiler("internvl", tile=TILE, max_tiles=4)
    layout = tiler.plan(10, 10)
    assert (layout.rows, layout.cols, layout.num_views, layout.global_view_index) == (1, 1, 1, -1)
    assert make_tiler("internvl", tile=TILE, max_tiles=1).global_view == "none"


def _model(global_view="last", max_views=5, image_size=TILE):
    return SimpleNamespace(vision=SimpleNamespace(image_size=image_size), max_views=max_views,
                           global_view=global_view, num_image_tokens=lambda n_views, grid, orig_size: 4 * n_views)


def test_processor_refuses_a_global_view_the_model_does_not_expect():
    with pytest.raises(ValueError, match=r"tiler 'anyres' .* puts the global view 'first' but the model's "
                                         r"global_view is 'last'"):
        ImageProcessor(dict(kind="anyres"), _model("last"))
    with pytest.raises(ValueError, match=r"tiler 'internvl' .* puts the global view 'none' but the model's "
                                         r"global_view is 'last'"):
        ImageProcessor(dict(kind="internvl", max_tiles=4, thumbnail=False), _model("last"))


def test_processor_refuses_more_views_than_the_model_holds():
    with pytest.raises(ValueError, match=r"tiler 'internvl' .* makes up to 13 views but the model's max_views is 5"):
        ImageProcessor(dict(kind="internvl", max_tiles=12, thumbnail=True), _model("last", max_views=5))
    with pytest.raises(ValueError, match=r"tiler 'dual' .* makes up to 19 views but the model's max_views is 9"):
        ImageProcessor(dict(kind="dual"), _model("last", max_views=9))


def test_processor_refuses_unknown_options_and_a_wrong_tile():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n'\] for tiler 'uhd'; known: "
                                         r"\['global_mode', 'max_slices'\]"):
        ImageProcessor(dict(kind="uhd", n=2), _model("first", max_views=8))
    with pytest.raises(ValueError, match=r"tiling.tile=32 must equal the ViT image_size=16"):
        ImageProcessor(dict(kind="internvl", tile=32), _model())


def test_processor_gives_the_global_view_index_with_the_views():
    tiny = dict(vision=presets.tiny_vision("internvit", image_size=TILE, patch=4), llm=presets.tiny_llm(),
                max_views=5, global_view="last", projector=dict(kind="internvl", downsample=0.5))
    processor = ImageProcessor(dict(kind="internvl", max_tiles=4, norm="imagenet"), VLMConfig.from_dict(tiny))
    image = _image(20, 70)
    processed = processor.process_image(image)
    assert processed.grid == (1, 4) and len(processed.views) == 5 and processed.global_index == 4
    whole = normalize(_stretched(image), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    np.testing.assert_array_equal(processed.views[processed.global_index], whole)
    views, grid = processor.process(image)  # the pipeline's two-value contract
    np.testing.assert_array_equal(views, processed.views)
    assert grid == processed.grid
    assert processor.process_image(_image(10, 10)).global_index == -1


def test_processor_imports_no_model_code():
    code = ("import sys, vlm_jax.data.processor; "
            "print(sorted(m for m in sys.modules if m == 'vlm_jax.model' or m.startswith(('vlm_jax.model_config', "
            "'vlm_jax.hires', 'vlm_jax.vision', 'vlm_jax.lm'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _run_tiles(argv, tmp_path, capsys, height=40, width=70):
    path = tmp_path / "image.png"
    Image.fromarray(_image(height, width)).save(path)
    try:
        cli.main(cli.FLAGS(["vlm-jax", "tiles", f"--image={path}", *argv]))
    finally:
        cli.FLAGS.unparse_flags()
    return capsys.readouterr().out


def test_cli_tiles_uses_the_registry(tmp_path, capsys):
    out = _run_tiles(["--kind=anyres", f"--tile={TILE}"], tmp_path, capsys)
    pinpoints = [[16, 32], [32, 16], [32, 32], [48, 16], [16, 48]]  # LLaVA-NeXT's grid shapes at 16 px
    layout = plan_anyres(40, 70, tile=TILE, pinpoints=pinpoints)
    assert str(layout) in out and f"{layout.num_views} views" in out and "whole-image view at index 0" in out
    out = _run_tiles([f"--tile={TILE}", "--max_tiles=4", "--tiler_option=thumbnail=False"], tmp_path, capsys, 20, 80)
    assert "4 views" in out and "index -1" in out
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_tiles'\] for tiler 'uhd'"):
        _run_tiles(["--kind=uhd", f"--tile={TILE}", "--max_tiles=4"], tmp_path, capsys)
