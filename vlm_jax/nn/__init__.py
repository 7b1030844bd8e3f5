"""Shared blocks: the Einsum projection, the attention module and entry point (with masks and the splash kernel),
transformer block, MLP, embedding/norms, pos-emb resize, RoPE, the precision policy, stacked (scanned) layers."""
