"""Data: tokenizer and chat templates, the EntityGrid-QA generator, sources (LLaVA JSON, ArrayRecord, TFDS),
the ArrayRecord converter, the host-side image processor and the Grain pipeline producing fixed-shape Batches."""
