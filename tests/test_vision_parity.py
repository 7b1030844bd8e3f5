"""Parity of vlm_jax's ViT with tiny random HF CLIP / SigLIP / InternVL vision towers (spec/parity.md §1.2).

Every HF parameter is perturbed after construction (HF initialises norms to 1/0, InternVL's
layer-scale to 0.1 and its CLS / position embeddings to 0), so a mis-mapped tensor cannot hide.
Tolerances: float32, 1e-5 relative + 1e-5 absolute.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
import transformers as T
from flax import nnx

from vlm_jax.interop.checkpoint_io import CheckpointError, TensorSource
from vlm_jax.interop.hf_vision import detect_kind, empty_vit, load_vit, load_vit_from_hf_dir, vit_config_from_hf

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=4)
TOL = dict(rtol=1e-5, atol=1e-5)

BUILDERS = {
    "clip": lambda: T.CLIPVisionModel(T.CLIPVisionConfig(**TINY, projection_dim=16)),
    "siglip": lambda: T.SiglipVisionModel(T.SiglipVisionConfig(**TINY)),
    "internvl": lambda: T.InternVLVisionModel(T.InternVLVisionConfig(**TINY)),
    "internvl_qknorm_bias_ln": lambda: T.InternVLVisionModel(T.InternVLVisionConfig(
        **TINY, use_qk_norm=True, attention_bias=True, use_mean_pooling=False, layer_scale_init_value=0.5)),
    "internvl_rms": lambda: T.InternVLVisionModel(T.InternVLVisionConfig(
        **TINY, norm_type="rms_norm", use_qk_norm=True, use_mask_token=True)),
}


def _kind(name: str) -> str:
    return name.split("_")[0]


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """name -> (HF model in eval mode, save_pretrained directory)."""
    out = {}
    for i, (name, build) in enumerate(BUILDERS.items()):
        torch.manual_seed(i)
        model = build().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, str(path))
    return out


def _pixels(n=2, h=32, w=32, seed=0):
    """Same images for torch ``[N, C, H, W]`` and JAX ``[N, H, W, C]``."""
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    return x, jnp.asarray(x.permute(0, 2, 3, 1).numpy())


def _run(vit, px, **kwargs):
    """``vit(px, **kwargs)`` compiled as one computation (eager mode compiles op by op)."""
    return nnx.jit(lambda m, p: m(p, **kwargs))(vit, px)


def _sequence(out):
    """VisionOutput -> HF-style ``[N, (1+)P, D]`` numpy."""
    if out.cls is None:
        return np.asarray(out.patches)
    return np.concatenate([np.asarray(out.cls)[:, None], np.asarray(out.patches)], axis=1)


SELECTED = (-3, -2, -1, 0, 1)


@nnx.jit
def _all_outputs(vit, px):
    """One compiled call: ``post_norm=True`` output and every ``select_layer`` of :data:`SELECTED`."""
    return vit(px, post_norm=True), [vit(px, select_layer=layer) for layer in SELECTED]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_hidden_states_match_hf(hf_models, name):
    model, path = hf_models[name]
    vit = load_vit_from_hf_dir(path, _kind(name))
    x, px = _pixels()
    with torch.no_grad():
        ref = model(x, output_hidden_states=True)
    last, selected = _all_outputs(vit, px)
    np.testing.assert_allclose(_sequence(last), ref.last_hidden_state.numpy(), **TOL)
    for layer, out in zip(SELECTED, selected):
        np.testing.assert_allclose(_sequence(out), ref.hidden_states[layer].numpy(),
                                   **TOL, err_msg=f"hidden_states[{layer}]")
    if _kind(name) == "siglip":
        assert last.cls is None
    else:
        np.testing.assert_allclose(np.asarray(last.cls), ref.last_hidden_state[:, 0].numpy(), **TOL)


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_pooled_output_matches_hf(hf_models, name):
    model, path = hf_models[name]
    vit = load_vit_from_hf_dir(path, name)
    x, px = _pixels()
    with torch.no_grad():
        ref = model(x).pooler_output.numpy()
    np.testing.assert_allclose(np.asarray(nnx.jit(lambda m, p: m.pool(m(p, post_norm=True)))(vit, px)), ref, **TOL)


@pytest.mark.parametrize("name", ["clip", "siglip", "internvl"])
def test_interpolated_position_embeddings_match_hf(hf_models, name):
    """A 48x40 image (grid 12x10 from the trained 8x8): HF resizes with torch bicubic, as we do."""
    model, path = hf_models[name]
    vit = load_vit_from_hf_dir(path, name)
    x, px = _pixels(h=48, w=40, seed=1)
    kwargs = {} if name == "internvl" else dict(interpolate_pos_encoding=True)
    with torch.no_grad():
        ref = model(x, **kwargs).last_hidden_state.numpy()
    out = _run(vit, px, post_norm=True, interpolate_pos=True)
    assert out.patches.shape == (2, 120, 32)
    np.testing.assert_allclose(_sequence(out), ref, **TOL)
    with pytest.raises(ValueError, match="interpolate_pos=True"):
        vit(px)


def test_image_size_not_a_multiple_of_patch_matches_hf(tmp_path):
    """Like SigLIP So400m/14 at 384 px: 30 px with patch 4 gives a 7x7 grid, 2 px unused."""
    torch.manual_seed(7)
    model = T.SiglipVisionModel(T.SiglipVisionConfig(**dict(TINY, image_size=30))).eval()
    model.save_pretrained(tmp_path)
    vit = load_vit_from_hf_dir(str(tmp_path), "siglip")
    x, px = _pixels(h=30, w=30, seed=2)
    with torch.no_grad():
        ref = model(x).last_hidden_state.numpy()
    out = _run(vit, px, post_norm=True)
    assert out.patches.shape == (2, 49, 32)
    np.testing.assert_allclose(_sequence(out), ref, **TOL)


def test_hook_after_layer0_matches_hf_layers_run_by_hand(hf_models):
    model, path = hf_models["clip"]
    vit = load_vit_from_hf_dir(path, "clip")
    x, px = _pixels()
    with torch.no_grad():
        h1 = model(x, output_hidden_states=True).hidden_states[1]
        ref = model.encoder.layers[1](h1 + 0.5, attention_mask=None).numpy()
    out = _run(vit, px, hooks={0: lambda t: t + 0.5})
    np.testing.assert_allclose(_sequence(out), ref, **TOL)
    np.testing.assert_allclose(_sequence(_run(vit, px, hooks={0: lambda t: t, 1: lambda t: t})),
                               _sequence(_run(vit, px)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="never run"):
        vit(px, select_layer=-2, hooks={1: lambda t: t})


def test_kind_detection_and_vlm_prefix(hf_models, tmp_path):
    for name in ("clip", "siglip", "internvl"):
        assert detect_kind(TensorSource.open(hf_models[name][1])) == name
    # the same tower saved inside a VLM-style checkpoint with hub (v4) naming
    model, path = hf_models["clip"]
    tensors = {f"vision_tower.vision_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(tensors, str(tmp_path / "model.safetensors"))
    vit = empty_vit(vit_config_from_hf({"vision_config": model.config.to_dict()}, "clip"))
    load_vit(vit, TensorSource.open(str(tmp_path)).sub("vision_tower."))
    x, px = _pixels()
    with torch.no_grad():
        ref = model(x).last_hidden_state.numpy()
    np.testing.assert_allclose(_sequence(_run(vit, px)), ref, **TOL)


def _save(tensors: dict, path) -> TensorSource:
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    return TensorSource.open(str(path))


def test_load_errors_name_the_tensor(hf_models, tmp_path):
    model, _ = hf_models["internvl_qknorm_bias_ln"]
    cfg = vit_config_from_hf(model.config.to_dict(), "internvl")
    sd = dict(model.state_dict())
    key = "encoder.layer.1.attention.k_norm.weight"

    missing = {k: v for k, v in sd.items() if k != key}
    (tmp_path / "a").mkdir()
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_vit(empty_vit(cfg), _save(missing, tmp_path / "a"))

    bad = dict(sd, **{"encoder.layer.0.mlp.fc1.weight": torch.zeros(65, 32)})
    (tmp_path / "b").mkdir()
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.mlp\.fc1\.weight.*\(65, 32\)"):
        load_vit(empty_vit(cfg), _save(bad, tmp_path / "b"))

    extra = dict(sd, **{"encoder.layer.0.attention.extra": torch.zeros(3)})
    (tmp_path / "c").mkdir()
    with pytest.raises(CheckpointError, match=r"unexpected.*attention\.extra"):
        load_vit(empty_vit(cfg), _save(extra, tmp_path / "c"))

    # a config that disagrees with the checkpoint (no qkv bias) leaves the biases unread
    with pytest.raises(CheckpointError, match="unexpected"):
        load_vit(empty_vit(cfg.replace(attn_bias=False)), TensorSource.open(hf_models[
            "internvl_qknorm_bias_ln"][1]))
