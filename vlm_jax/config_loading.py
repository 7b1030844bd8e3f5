"""Loading a run config from the command line: ``--config=configs/x.py[:args]`` plus ``--config.a.b=value``
overrides (ml_collections ``config_flags``), then every block typed and checked before a command runs.

A key that does not exist, in an override or in the config file, fails with a message naming the key, its block
and the closest valid keys (``unknown config.train keys ['log_evry'] ('log_evry': did you mean 'log_every'?)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from vlm_jax.config_util import unknown_keys_message
from vlm_jax.run_config import RunConfig


class ConfigError(ValueError):
    """The config given on the command line is invalid (unknown key, bad value, refused combination)."""


def check_config(config: Any) -> RunConfig:
    """Type every block of a loaded config: :class:`RunConfig` (train, data, mesh, init) and the model
    (``VLMConfig.from_dict``); raises ``ValueError`` naming the first problem."""
    from vlm_jax.model_config import VLMConfig  # the model config's modules import flax: only when checking

    run = RunConfig.from_config(config)
    VLMConfig.from_dict(run.model)
    return run


def override_error(config: Any, path: str) -> str | None:
    """Why the override ``--config.<path>=...`` names no field of ``config`` (``None`` when it does)."""
    node, where = config, "config"
    for part in config_path.split(path):
        if isinstance(part, int) and isinstance(node, (list, tuple)):
            if not -len(node) <= part < len(node):
                return f"{where} has {len(node)} items, no [{part}] (--config.{path})"
            node, where = node[part], f"{where}[{part}]"
        elif isinstance(part, str) and hasattr(node, "keys"):
            if part not in node.keys():
                return unknown_keys_message(where, [part], node.keys()) + f" (--config.{path})"
            node, where = node[part], f"{where}.{part}"
        else:
            return (f"{where} is {node!r}, not a block: --config.{path} cannot set a key inside it"
                    + (f" (set it whole: --config.{where[len('config.'):]}=\"{{...}}\")" if node is None else ""))
    return None


def _config_args(argv: Sequence[str], name: str) -> tuple[str | None, list[str]]:
    """The ``--<name>`` value and the override paths (``--<name>.a.b=...``) of a command line."""
    value, paths = None, []
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"--{name}."):
            paths.append(arg[len(name) + 3:].split("=", 1)[0])
    return value, paths


def _explain_override(argv: Sequence[str], flag_values: flags.FlagValues, name: str) -> str | None:
    value, paths = _config_args(argv, name)
    if value is None:
        return None
    config = flag_values[name].parser.parse(value)
    return next(filter(None, (override_error(config, p) for p in paths)), None)


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS, name: str = "config") -> list[str]:
    """Parse ``argv`` into ``flag_values`` (as ``absl.app`` does) and check the config flag ``name``.

    Returns the arguments that are not flags. Raises :class:`ConfigError` for an override of a key that does not
    exist and for a config that :func:`check_config` refuses; other flag errors raise ``absl.flags.Error``.
    """
    try:
        rest = flag_values(list(argv))
    except (AttributeError, KeyError, IndexError, ValueError) as err:  # ml_collections: a path that does not exist
        message = _explain_override(argv, flag_values, name)
        if message is None:
            raise
        raise ConfigError(message) from err
    config = flag_values[name].value
    if config is not None:
        try:
            check_config(config)
        except ValueError as err:
            raise ConfigError(f"{config_flags.get_config_filename(flag_values[name])}: {err}") from err
    return rest
