"""Test set-up: 8 CPU devices in one process so sharding is tested on a real mesh."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")

import vlm_jax.nn  # noqa: E402,F401  (sets flax's variable-creation mode)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than ~30 s on 2 cores (deselect with -m 'not slow')")
