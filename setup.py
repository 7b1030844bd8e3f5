"""vlm_jax: high-resolution vision-language models in JAX/Flax NNX (GSWA, HiRes-LLaVA, INF-LLaVA, SliME)."""

from setuptools import find_packages, setup

JAX_VERSION = "0.10.2"

setup(
    name="vlm_jax",
    version="0.1.0",
    description="High-resolution vision-language models in JAX/Flax: tiling, sub-image weighting, "
                "restore adapters and token samplers under GSPMD sharding.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["vlm_jax", "vlm_jax.*"]),
    install_requires=[
        f"jax=={JAX_VERSION}",
        f"jaxlib=={JAX_VERSION}",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "grain>=0.2.18",
        "sentencepiece>=0.2",
        "protobuf>=4",  # SentencePiece model protos (dummy-prefix switch, piece types)
        "tokenizers>=0.21",  # checkpoint tokenizer.json (Llama-3, Qwen2)
        "jinja2>=3.1.6",  # checkpoint chat templates (sandbox fixes as transformers requires)
        "ml-collections>=1.1",
        "tensorflow-datasets>=4.9.10",
        "numpy>=2.0",
        "pillow>=11",
        "absl-py>=2.1",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "safetensors>=0.6",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.6", "nbformat>=5.10", "nbclient>=0.10", "ipykernel>=6.29", "mypy>=1.10",
                 "ruff>=0.17"],
        # torch 2.13.0 is a CPU build on the project's machines; never torchvision (breaks imports).
        "hf": ["torch==2.13.0", "transformers==5.23.0", "safetensors>=0.6"],
        "tpu": [f"jax[tpu]=={JAX_VERSION}"],
    },
    entry_points={"console_scripts": ["vlm-jax=vlm_jax.cli:run"]},
)
