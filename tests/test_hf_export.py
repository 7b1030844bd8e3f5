"""HF export (``vlm_jax.interop.hf_export``): import → export → transformers ``from_pretrained`` → same logits.

Tiny perturbed HF models (``tests/hf_builders.py``) are saved, imported with ``load_vlm_from_hf_dir``,
exported with ``export_hf`` to another directory, and that directory is loaded by transformers' own
``…ForConditionalGeneration.from_pretrained``: no missing / unexpected keys, and its logits equal the
original model's (float32, max |Δ| ≤ 1e-5 · max |ref|). A parameter changed in JAX must show up in
transformers (the export cannot pass by copying files); sharded output (tiny ``max_shard_bytes``)
loads; models with stages transformers lacks are refused. The CLI path exports a 2-step training run.
"""

import dataclasses
import json
import os
import subprocess
import sys

import hf_builders as hb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers as T
from flax import nnx
from PIL import Image
from safetensors import safe_open
from transformers.models.llava_next.modeling_llava_next import (
    get_anyres_image_grid_shape,
)

from vlm_jax import presets, sharding
from vlm_jax.interop.hf_config_export import NotExportable, default_pinpoints, hf_config
from vlm_jax.interop.hf_export import export_hf
from vlm_jax.interop.hf_vlm import load_vlm_from_hf_dir
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.nn.rope import RopeScaling

REL_TOL = 1e-5  # export is exact in float32: only the forward passes' own rounding could differ
MODEL_REL_TOL = 1e-4  # our JAX forward vs transformers (spec: whole-model logits)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEXT_SIZE = (30, 64)  # LLaVA-NeXT image (H, W): a 1x2 grid


def _check_close(ours, ref, tol, mask=None):
    ours, ref = np.asarray(ours), np.asarray(ref)
    if mask is not None:
        ours, ref = ours[mask], ref[mask]
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert scale > 0.5, "reference logits too small for a meaningful relative check"
    assert err <= tol * scale, f"max |Δlogits| {err:.3g} > {tol} · {scale:.3g}"


def _inputs(family: str, hf) -> dict:
    """HF forward kwargs: one image and a short text, image token count from HF ``get_image_features``."""
    gen = torch.Generator().manual_seed(7)
    if family == "llava_next":
        grid = get_anyres_image_grid_shape(NEXT_SIZE, hb.PINPOINTS, 32)
        kw = dict(pixel_values=torch.randn(1, 1 + grid[0] * grid[1], 3, 32, 32, generator=gen),
                  image_sizes=torch.tensor([NEXT_SIZE]))
    else:  # InternVL: 3 tiles of one image; LLaVA: one view
        kw = dict(pixel_values=torch.randn(3 if family == "internvl" else 1, 3, 32, 32, generator=gen))
    with torch.no_grad():
        feats = hf.model.get_image_features(**kw).pooler_output
    n = sum(int(np.prod(f.shape[:-1])) for f in feats)
    ids = hb.prompt(n, 6, np.random.default_rng(7))
    return dict(kw, input_ids=torch.tensor(ids[None]))


def _logits(hf, kw) -> np.ndarray:
    with torch.no_grad():
        return hf(**kw).logits.numpy()


def _build_llava_siglip(seed: int) -> T.LlavaForConditionalGeneration:
    """LLaVA with a SigLIP tower (no CLS, MAP head kept in the checkpoint), all tokens of the last layer."""
    torch.manual_seed(seed)
    vision = T.SiglipVisionConfig(**{k: v for k, v in hb.CLIP_V.items() if k != "projection_dim"})
    cfg = T.LlavaConfig(vision_config=vision, text_config=T.LlamaConfig(**hb.TEXT), image_token_index=hb.IMG_TOK,
                        vision_feature_layer=-1, vision_feature_select_strategy="full")
    return hb.perturb(T.LlavaForConditionalGeneration(cfg), seed)


BUILDERS = {"llava": (hb.build_llava, T.LlavaForConditionalGeneration, {}),
            "llava_siglip": (_build_llava_siglip, T.LlavaForConditionalGeneration, dict(family="llava")),
            "llava_next": (hb.build_llava_next, T.LlavaNextForConditionalGeneration,
                           dict(image_grid_pinpoints=hb.PINPOINTS, max_shard_bytes=40_000)),
            "internvl": (hb.build_internvl, T.InternVLForConditionalGeneration, dict(max_shard_bytes=40_000))}


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    """Per family: original HF model, our import, the export directory, the reloaded HF model, inputs."""
    out = {}
    for family, (build, cls, export_kw) in BUILDERS.items():
        hf = build(seed=11)
        src, dst = tmp_path_factory.mktemp(family + "_src"), tmp_path_factory.mktemp(family + "_export")
        hf.save_pretrained(src)
        ours = load_vlm_from_hf_dir(str(src))
        files = export_hf(ours, str(dst), **{"family": family, **export_kw})
        reloaded, info = cls.from_pretrained(str(dst), output_loading_info=True)
        out[family] = dict(hf=hf, ours=ours, src=str(src), dir=str(dst), files=files, reloaded=reloaded.eval(),
                           info=info, kw=_inputs(family, hf))
    return out


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_round_trip_logits_match_original(family, round_trips):
    case = round_trips[family]
    info = case["info"]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    _check_close(_logits(case["reloaded"], case["kw"]), _logits(case["hf"], case["kw"]), REL_TOL)
    original = case["hf"].state_dict()
    for key, value in case["reloaded"].state_dict().items():  # bit-exact float32 weights
        torch.testing.assert_close(value, original[key], rtol=0, atol=0, msg=key)


def _saved_tensors(path: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` over every safetensors file of a directory."""
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(path, name), "np") as f:
                out.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    return out


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_keys_and_shapes_equal_transformers_save_pretrained(family, round_trips):
    """Same tensor names and shapes as transformers' own ``save_pretrained`` (tied InternVL: no lm_head)."""
    case = round_trips[family]
    ours, theirs = _saved_tensors(case["dir"]), _saved_tensors(case["src"])
    assert ours == theirs
    assert any("lm_head" in k for k in ours) == (family != "internvl")
    assert any(k.startswith("vision_tower.head.") for k in ours) == (family == "llava_siglip")


def test_file_layout(round_trips):
    assert round_trips["llava"]["files"] == ["model.safetensors", "config.json"]
    for family in ("llava_next", "internvl"):
        case = round_trips[family]
        shards = [f for f in case["files"] if f.endswith(".safetensors")]
        assert len(shards) > 2 and "model.safetensors.index.json" in case["files"]
        with open(os.path.join(case["dir"], "model.safetensors.index.json")) as f:
            index = json.load(f)
        assert sorted(set(index["weight_map"].values())) == shards
        tensors = _saved_tensors(case["dir"])
        assert sorted(index["weight_map"]) == sorted(tensors)
        assert index["metadata"]["total_size"] == sum(4 * int(np.prod(s)) for s in tensors.values())
        assert sorted(os.listdir(case["dir"])) == sorted(case["files"])
    reloaded = round_trips["internvl"]["reloaded"]
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.language_model.embed_tokens.weight.data_ptr()


def test_config_loads_with_transformers(round_trips):
    for family, cls in (("llava", T.LlavaConfig), ("llava_next", T.LlavaNextConfig), ("internvl", T.InternVLConfig)):
        cfg = T.AutoConfig.from_pretrained(round_trips[family]["dir"])
        ref = round_trips[family]["hf"].config
        assert type(cfg) is cls and cfg.dtype in ("float32", torch.float32)
        assert type(cfg.vision_config) is type(ref.vision_config)
        ours, theirs = (json.loads(c.vision_config.to_json_string()) for c in (cfg, ref))
        for key in ("hidden_size", "num_hidden_layers", "image_size", "patch_size", "hidden_act", "layer_norm_eps"):
            assert ours[key] == theirs[key], (family, key)
        assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (
            ref.vision_feature_layer, ref.vision_feature_select_strategy)
        assert cfg.text_config.model_type == ref.text_config.model_type
    assert T.AutoConfig.from_pretrained(round_trips["internvl"]["dir"]).downsample_ratio == 0.5
    # default pinpoints: transformers' own LLaVA-NeXT 1.6 default at 336 px, scaled
    assert sorted(default_pinpoints(336)) == sorted(T.LlavaNextConfig().image_grid_pinpoints)
    assert sorted(default_pinpoints(32)) == sorted(hb.PINPOINTS)


def test_change_made_in_jax_reaches_transformers(round_trips, tmp_path):
    """Bump one projector bias entry in our model: transformers sees it, and its logits equal our forward."""
    case = round_trips["llava"]
    model = nnx.clone(case["ours"])  # the fixture's model stays unchanged
    bias = model.projector.linear_2.bias
    bias.set_value(bias.get_value().at[0].add(0.05))
    export_hf(model, str(tmp_path))
    reloaded = T.LlavaForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    delta = (reloaded.model.multi_modal_projector.linear_2.bias - case["hf"].model.multi_modal_projector.linear_2.bias)
    np.testing.assert_allclose(delta.detach().numpy(), np.eye(delta.shape[0])[0] * 0.05, atol=1e-7)
    kw = case["kw"]
    new = _logits(reloaded, kw)
    with pytest.raises(AssertionError, match="logits"):
        _check_close(new, _logits(case["hf"], kw), REL_TOL)
    ids = kw["input_ids"].numpy()
    batch = hb.our_batch(ids, np.ones_like(ids, bool), [kw["pixel_values"].numpy()], max_views=1)
    _check_close(nnx.jit(lambda m, b: m(b))(model, batch), new, MODEL_REL_TOL)
    assert float(jnp.abs(case["ours"].projector.linear_2.bias[...] - bias[...]).max()) > 0.04


@pytest.mark.parametrize("preset, stages", [
    ("sleighvl_2b", ["gswa"]), ("hires_llava_7b", ["slice_restore", "self_mining"]), ("inf_llava_8b", ["dem"]),
    ("slime_7b", ["slime"]), ("slime_8b", ["slime"])])
def test_stages_without_hf_equivalent_are_refused(preset, stages):
    """Every paper preset is refused, the message naming each of its modules (and only those)."""
    cfg = VLMConfig.from_dict(getattr(presets, preset)())
    with pytest.raises(NotExportable, match="module") as err:
        hf_config(cfg, "internvl" if preset == "sleighvl_2b" else "llava")
    named = {s for s in ("gswa", "slice_restore", "self_mining", "dem", "slime") if s in str(err.value)}
    assert named == set(stages), str(err.value)


def test_export_hf_refuses_before_writing(round_trips, tmp_path):
    cfg = round_trips["llava"]["ours"].cfg
    gswa = dict(dim=16, layers=1, heads=2)
    gswa_cfg = VLMConfig.from_dict({**dataclasses.asdict(cfg), "global_view": "last", "gswa": gswa})
    abstract = nnx.eval_shape(lambda: VLM(gswa_cfg, rngs=nnx.Rngs(0)))
    with pytest.raises(NotExportable, match="gswa"):
        export_hf(abstract, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(NotExportable, match="'llava', not 'internvl'"):
        export_hf(round_trips["llava"]["ours"], str(tmp_path / "out"), family="internvl")


@pytest.mark.parametrize("change, message", [
    (lambda c: dataclasses.replace(c, vision=c.vision.replace(final_norm="none")), "vision.final_norm"),
    (lambda c: dataclasses.replace(c, llm=c.llm.replace(rope_scaling=RopeScaling("dynamic", 2.0, 64))),
     "llm.rope_scaling"),
    (lambda c: dataclasses.replace(c, projector=dataclasses.replace(c.projector, act="silu")), "projector activation"),
    (lambda c: dataclasses.replace(c, vision=c.vision.replace(act="relu")), "vision activation"),
])
def test_settings_the_hf_config_cannot_express_are_refused(change, message, round_trips):
    with pytest.raises(NotExportable, match=message):
        hf_config(change(round_trips["llava"]["ours"].cfg), "llava")


def _tiny_llava_train_config(steps: int):
    """``configs/tiny_entitygrid.py`` shrunk like ``tests/test_train.py`` with a CLIP tower + mlp2x_gelu and LLaVA's
    one stretched view per image (``fixed`` tiler, CLIP normalisation)."""
    import importlib.util

    path = os.path.join(ROOT, "configs", "tiny_entitygrid.py")
    spec = importlib.util.spec_from_file_location("tiny_entitygrid", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(f"steps={steps}")
    c.model.vision = presets.tiny_vision("clip", image_size=16, patch=4, hidden=32, layers=2)
    c.model.llm.update(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64)
    c.model.update(projector=dict(kind="mlp2x_gelu"), select_layer=-2, max_views=1, global_view="none")
    c.data.source.update(canvas=32, size=256)
    c.data.eval_source = None
    c.data.tiling = dict(kind="fixed", norm="clip")
    c.data.update(batch_size=8, seq_buckets=(96,))  # 16 visual tokens + text
    c.train.update(log_every=1, ckpt_every=2)
    return c


def _run(args: list[str]) -> str:
    """Run ``python args`` on one CPU device (training on the 8 test devices compiles twice as long)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_cli_exports_a_training_run(tmp_path):
    """2 training steps → ``vlm-jax export`` → transformers loads it; its logits equal our restored model's."""
    from vlm_jax.state.restore import restore_params

    workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
    _run(["-c", ("from test_hf_export import _tiny_llava_train_config as c; from vlm_jax.train.loop import train; "
                 f"train(c(2), {workdir!r})")])
    stdout = _run(["-m", "vlm_jax.cli", "export", f"--checkpoint={workdir}", "--format=hf", f"--out={out}"])
    assert "model.safetensors" in stdout

    cfg, graphdef, params = restore_params(workdir)
    assert cfg.projector.kind == "mlp2x_gelu" and cfg.image_token_id == 4
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(params))  # fsdp over 8 devices
    model = nnx.merge(graphdef, params)
    hf, info = T.LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    ids = np.concatenate([[1], np.full(cfg.tokens_per_view, cfg.image_token_id), rng.integers(5, 300, 7)])[None]
    ref = _logits(hf.eval(), dict(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels)))
    batch = hb.our_batch(ids, np.ones_like(ids, bool), [pixels], max_views=cfg.max_views)
    batch["image_slots"] = ids == cfg.image_token_id
    ours = jax.jit(lambda p, b: nnx.merge(graphdef, p)(b))(params, batch)
    _check_close(ours, ref, MODEL_REL_TOL)
    assert not np.allclose(np.asarray(model.projector.linear_1.bias[...]), 0.0)  # trained, not a fresh init
    _check_run_files(workdir, out, hf)
    stdout = _run(["-m", "vlm_jax.cli", "export", f"--checkpoint={workdir}", f"--out={out}_bf16", "--dtype=bfloat16"])
    assert "generation_config.json" in stdout
    with safe_open(os.path.join(f"{out}_bf16", "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}


def _check_run_files(workdir: str, out: str, hf) -> None:
    """The run's tokenizer (the embedded default) and chat template (chatml) load with ``AutoProcessor``: its prompt
    ids and pixels for an image + question are ours, and HF's greedy answer is ``generate_text``'s on the workdir."""
    from vlm_jax.evaluate.generate_text import generate_text, prompt_batch
    from vlm_jax.evaluate.generation_setup import load_for_generation

    processor = T.AutoProcessor.from_pretrained(out)
    bundle = load_for_generation(workdir)
    assert bundle.template == "chatml"
    image = np.random.default_rng(2).integers(0, 256, (37, 23, 3), dtype=np.uint8)
    prompt = "What is at the top left?"
    content = [{"type": "image"}, {"type": "text", "text": prompt}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(images=Image.fromarray(image), text=text, add_special_tokens=False, return_tensors="pt")
    batch = prompt_batch(bundle.tokenizer, bundle.processor, image, prompt, bundle.template)
    np.testing.assert_array_equal(inputs["input_ids"][0].numpy(), batch["tokens"][0])
    pixels = inputs["pixel_values"].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(pixels, batch["pixels"][0, :1], atol=1e-6, rtol=0)
    with torch.no_grad():
        new = hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0, batch["tokens"].shape[1]:].tolist()
    if new[-1] in hf.generation_config.eos_token_id:
        new = new[:-1]
    with sharding.use_mesh(bundle.mesh):
        ours = generate_text(bundle.model, bundle.tokenizer, bundle.processor, image, prompt, bundle.template,
                             max_new_tokens=6)
    assert ours == processor.tokenizer.decode(new)


def test_bfloat16_export_is_the_float32_export_rounded(round_trips, tmp_path):
    """``dtype="bfloat16"``: every tensor (read back by ``safetensors``) is torch's bf16 rounding of the f32 export,
    the file is half the size, and transformers loads it as a bfloat16 model."""
    case = round_trips["llava"]
    export_hf(case["ours"], str(tmp_path), dtype="bfloat16")
    with safe_open(os.path.join(case["dir"], "model.safetensors"), "pt") as f32, \
            safe_open(os.path.join(tmp_path, "model.safetensors"), "pt") as bf16:
        assert sorted(f32.keys()) == sorted(bf16.keys())
        for key in f32.keys():
            value = bf16.get_tensor(key)
            assert value.dtype == torch.bfloat16, key
            torch.testing.assert_close(value, f32.get_tensor(key).to(torch.bfloat16), rtol=0, atol=0, msg=key)
    sizes = [os.path.getsize(os.path.join(d, "model.safetensors")) for d in (case["dir"], tmp_path)]
    assert sizes[1] < 0.52 * sizes[0]  # half the data, the same header
    reloaded = T.LlavaForConditionalGeneration.from_pretrained(str(tmp_path))
    assert reloaded.config.dtype in ("bfloat16", torch.bfloat16)
    assert reloaded.model.multi_modal_projector.linear_1.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        export_hf(case["ours"], str(tmp_path / "f16"), dtype="float16")
    assert not os.path.exists(tmp_path / "f16")
