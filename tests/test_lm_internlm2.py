"""InternLM2 import: a tiny HF Llama rewritten in InternLM2's checkpoint layout must give the Llama's logits.

transformers has no native InternLM2 class, and InternLM2 is a Llama with renamed tensors and a fused
``wqkv``. The test writes the fused weight itself from the layout of InternLM2's ``modeling_internlm2.py``
(``hf_builders.internlm2_wqkv``: per kv head, G query heads, one key, one value). GQA with G = 2 and K = 2
makes a wrong grouping visible; the sequence (12) is longer than ``max_position_embeddings`` (8), so the
dynamic-NTK RoPE of InternVL2-2B's LLM is exercised too.
"""

import json

import hf_builders as hb
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
import torch
import transformers as T
from safetensors.torch import save_file
from test_lm_hf_parity import assert_close

from vlm_jax.interop.apply_mapping import plan_export
from vlm_jax.interop.hf_lm import lm_config_from_hf, load_decoder_from_hf_dir
from vlm_jax.interop.mappings.towers import DECODERS
from vlm_jax.nn.attention import causal_mask
from vlm_jax.nn.rope import RopeScaling

H, K, D, LAYERS = 4, 2, 32, 2
ROPE = {"type": "dynamic", "factor": 2.0}


def internlm2_config() -> dict:
    """The ``config.json`` of the InternLM2 checkpoint (dynamic NTK RoPE, base length 8)."""
    return hb.internlm2_config(vocab_size=128, hidden_size=D, intermediate_size=64, num_hidden_layers=LAYERS,
                               num_attention_heads=H, num_key_value_heads=K, max_position_embeddings=8,
                               rms_norm_eps=1e-5, rope_scaling=ROPE)


def write_internlm2_checkpoint(llama: T.LlamaForCausalLM, path) -> None:
    tensors = hb.internlm2_tensors(llama.state_dict(), "model.", "lm_head.weight", LAYERS, K)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(internlm2_config()))


def tiny_llama() -> T.LlamaForCausalLM:
    """The Llama whose weights are rewritten in InternLM2's layout (norm scales perturbed away from 1)."""
    torch.manual_seed(0)
    llama = T.LlamaForCausalLM(T.LlamaConfig(
        vocab_size=128, hidden_size=D, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=H,
        num_key_value_heads=K, max_position_embeddings=8, rms_norm_eps=1e-5, initializer_range=0.2,
        rope_scaling={"rope_type": "dynamic", "factor": 2.0})).eval()
    with torch.no_grad():
        for p in llama.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return llama


def test_internlm2_layout_reproduces_llama_logits(tmp_path):
    cfg = internlm2_config()
    llama = tiny_llama()
    write_internlm2_checkpoint(llama, tmp_path)
    tokens = np.random.default_rng(1).integers(0, 128, (2, 12))
    with torch.no_grad():
        out = llama(input_ids=torch.tensor(tokens), output_hidden_states=True)

    decoder = load_decoder_from_hf_dir(str(tmp_path))
    assert decoder.cfg.rope_scaling == RopeScaling("dynamic", 2.0, original_max_len=8)
    assert decoder.cfg == lm_config_from_hf(cfg)
    valid = np.ones(tokens.shape, bool)
    hidden, _ = decoder(decoder.embed(jnp.asarray(tokens)), positions=jnp.broadcast_to(jnp.arange(12), (2, 12)),
                        mask=causal_mask(jnp.asarray(valid)))
    assert_close(hidden, out.hidden_states[-1].numpy(), valid, rel=1e-4)
    assert_close(decoder.logits(hidden), out.logits.numpy(), valid, rel=1e-4)


def test_internlm2_table_writes_back_the_fused_checkpoint(tmp_path):
    """The export direction of the same table (``grouped_qkv`` fused back, ``output`` / ``tok_embeddings`` names)
    reproduces the checkpoint written above from InternLM2's layout, bit for bit."""
    write_internlm2_checkpoint(tiny_llama(), tmp_path)
    decoder = load_decoder_from_hf_dir(str(tmp_path))
    exported = {t.key: t.fetch() for t in plan_export(decoder, DECODERS["internlm2"].keys(decoder.cfg))}
    written = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    assert sorted(exported) == sorted(written)
    for key, value in written.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    assert DECODERS["internlm2"].config.to_ours(DECODERS["internlm2"].config.to_hf(decoder.cfg)) == \
        DECODERS["internlm2"].config.to_ours(internlm2_config())
