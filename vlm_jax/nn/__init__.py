"""Shared layers: dense/embedding/norms, the attention entry point, stacked (scanned) layers."""
