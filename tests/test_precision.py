"""The precision policy (vlm_jax.nn.precision): parsing, refusals, and every paper preset's tiny variant under the
bf16 policy — float32 parameters, every module's output in bfloat16, logits in float32 — plus per-module
overrides. Shapes and dtypes are traced abstractly (``jax.eval_shape``), nothing is computed."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from flax import nnx

from vlm_jax import config_blocks
from vlm_jax.hires.dual_perspective import DualPerspectiveEnhancement
from vlm_jax.hires.gswa import GSWA
from vlm_jax.hires.self_mining import SelfMiningSampler
from vlm_jax.hires.slice_restore import SliceRestoreAdapter
from vlm_jax.hires.slime import SlimeConnector
from vlm_jax.lm.decoder import Decoder
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.nn.precision import Dtypes, PrecisionPolicy
from vlm_jax.projectors import InternVLProjector, MLPProjector
from vlm_jax.vision.vit import ViT

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")

# (recorded name, class, method, the array of the method's output whose dtype is checked)
RECORDED = [
    ("vision", ViT, "__call__", lambda out: out.patches),
    ("slice_restore", SliceRestoreAdapter, "restore", lambda out: out),
    ("self_mining", SelfMiningSampler, "__call__", lambda out: out),
    ("dem", DualPerspectiveEnhancement, "__call__", lambda out: out),
    ("gswa", GSWA, "__call__", lambda out: out),
    ("slime", SlimeConnector, "__call__", lambda out: out[0]),
    ("projector", MLPProjector, "__call__", lambda out: out),
    ("projector", InternVLProjector, "__call__", lambda out: out),
    ("logits", Decoder, "logits", lambda out: out),
]
PAPERS = {
    "sleighvl_2b": {"vision", "gswa", "projector", "logits"},
    "hires_llava_7b": {"vision", "slice_restore", "self_mining", "projector", "logits"},
    "inf_llava_8b": {"vision", "dem", "projector", "logits"},
    "slime_7b": {"vision", "slime", "projector", "logits"},
    "slime_8b": {"vision", "slime", "projector", "logits"},
}


def _tiny_model(name: str) -> dict:
    spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny").model.to_dict()


def _batch(cfg: VLMConfig, b: int = 2, length: int = 24) -> dict[str, np.ndarray]:
    t = cfg.vision.image_size
    tile_mask = np.zeros((b, cfg.max_views), bool)
    tile_mask[:, :3] = True
    slots = np.zeros((b, length), bool)
    slots[:, 2:10] = True
    return {"pixels": np.zeros((b, cfg.max_views, t, t, 3), np.float32), "tile_mask": tile_mask,
            "grid": np.ones((b, 2), np.int32), "orig_size": np.full((b, 2), t, np.int32),
            "tokens": np.ones((b, length), np.int32), "valid": np.ones((b, length), bool), "image_slots": slots,
            "loss_mask": np.ones((b, length), bool), "prompt_mask": ~slots}


def _traced_dtypes(cfg: VLMConfig, monkeypatch) -> tuple[dict[str, set], nnx.State]:
    """``{recorded name: output dtypes}`` of one abstract forward pass, and the abstract parameters."""
    seen: dict[str, set] = {}
    for name, cls, method, pick in RECORDED:
        original = getattr(cls, method)

        def recording(self, *args, _name=name, _original=original, _pick=pick, **kwargs):
            out = _original(self, *args, **kwargs)
            seen.setdefault(_name, set()).add(np.dtype(_pick(out).dtype))
            return out

        monkeypatch.setattr(cls, method, recording)
    abstract = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    jax.eval_shape(lambda s, batch: nnx.merge(graphdef, s)(batch), state, _batch(cfg))
    return seen, nnx.state(abstract, nnx.Param)


def _param_dtypes(params: nnx.State, prefix: str | None = None) -> set:
    return {np.dtype(v.get_value().dtype) for path, v in nnx.to_flat_state(params)
            if prefix is None or path[0] == prefix}


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_tiny_paper_preset_under_the_bf16_policy(name, monkeypatch):
    cfg = VLMConfig.from_dict(config_blocks.bf16(_tiny_model(name)))
    assert cfg.precision == PrecisionPolicy(params="float32", compute="bfloat16")
    seen, params = _traced_dtypes(cfg, monkeypatch)
    assert PAPERS[name] <= set(seen), f"modules that never ran: {PAPERS[name] - set(seen)}"
    bf16, f32 = np.dtype(jax.numpy.bfloat16), np.dtype(np.float32)
    assert {module: dtypes for module, dtypes in seen.items() if module != "logits"} == \
        {module: {bf16} for module in seen if module != "logits"}
    assert seen["logits"] == {f32}
    assert _param_dtypes(params) == {f32}


def test_default_policy_is_float32_everywhere(monkeypatch):
    seen, params = _traced_dtypes(VLMConfig.from_dict(_tiny_model("hires_llava_7b")), monkeypatch)
    assert set().union(*seen.values()) == {np.dtype(np.float32)} and _param_dtypes(params) == {np.dtype(np.float32)}


def test_per_module_overrides(monkeypatch):
    model = config_blocks.bf16(_tiny_model("sleighvl_2b"))
    model["precision"]["overrides"] = {"gswa": "float32", "vision": dict(params="bfloat16")}
    seen, params = _traced_dtypes(VLMConfig.from_dict(model), monkeypatch)
    bf16, f32 = np.dtype(jax.numpy.bfloat16), np.dtype(np.float32)
    assert seen["gswa"] == {f32} and _param_dtypes(params, "gswa") == {f32}
    assert seen["vision"] == {bf16} and _param_dtypes(params, "vision") == {bf16}
    assert seen["projector"] == {bf16} and _param_dtypes(params, "projector") == {f32}


def test_policy_parsing():
    policy = PrecisionPolicy.from_dict(dict(params="float32", compute="bfloat16",
                                            overrides={"gswa": "float32", "vision": dict(compute="float16")}))
    assert policy.for_module("llm") == Dtypes("float32", "bfloat16")
    assert policy.for_module("gswa") == Dtypes("float32", "float32")
    assert policy.for_module("vision") == Dtypes("float32", "float16")
    assert hash(policy) == hash(PrecisionPolicy.from_dict(dict(params="float32", compute="bfloat16", overrides={
        "vision": dict(compute="float16"), "gswa": "float32"})))


@pytest.mark.parametrize("bad, message", [
    (dict(compute="bf16"), "compute='bf16'"),
    (dict(compute="bfloat16", weights="float32"), "unknown precision keys"),
    (dict(overrides={"gswa": "fp8"}), "gswa"),
    (dict(overrides={"gswa": dict(compute="bfloat16", remat="full")}), "unknown keys"),
])
def test_bad_policies_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        PrecisionPolicy.from_dict(bad)


def test_vlm_config_refuses_overrides_of_absent_modules_and_tower_dtypes():
    model = _tiny_model("inf_llava_8b")
    with pytest.raises(ValueError, match=r"\['gswa'\] name no module"):
        VLMConfig.from_dict(dict(model, precision=dict(overrides={"gswa": "float32"})))
    with pytest.raises(ValueError, match="precision policy"):
        VLMConfig.from_dict(dict(model, vision=dict(model["vision"], dtype="bfloat16")))
    with pytest.raises(ValueError, match="precision policy"):
        VLMConfig.from_dict(dict(model, llm=dict(model["llm"], param_dtype="bfloat16")))
