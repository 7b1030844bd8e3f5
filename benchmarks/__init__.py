"""Performance benchmarks of vlm_jax against its peers (issue 11), run with ``python -m benchmarks.run``.

Every benchmark of :data:`benchmarks.registry.BENCHMARKS` measures one figure against its peer in the same
process (transformers + torch for the train step and greedy decoding, the Hugging Face PIL image processors
for tiling), checks that both produce the same outputs (losses, tokens, pixels) and returns table rows
(:class:`benchmarks.results.Row`). See ``benchmarks/README.md``.
"""
