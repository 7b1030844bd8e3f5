"""Hugging Face safetensors import (never pickle): key-name normalisation, streaming tensor access, and one
loader per family (vision towers, decoders, LLaVA / LLaVA-NeXT / InternVL)."""
