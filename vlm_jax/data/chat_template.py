"""Rendering a checkpoint's Jinja chat template the way transformers' ``apply_chat_template`` renders it.

The environment is the one transformers builds (``utils/chat_template_utils.py``): an immutable sandbox with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a ``{% generation %}`` block (rendered
as its body), a ``tojson`` filter that keeps non-ASCII text and does not escape HTML, and the globals
``raise_exception`` (raises ``jinja2.TemplateError``), ``strftime_now``, ``dict`` and ``namespace``.
The template sees ``messages``, ``add_generation_prompt``, ``tools=None``, ``documents=None`` and the
tokenizer's special tokens by name (``bos_token``, ``eos_token``, ...).
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (assistant-mask markers of some templates): the body as is."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    @staticmethod
    def _body(caller):
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """jinja2's namespace without underscore attributes (no way to CPython internals from a template)."""

    def __init__(*args, **kwargs):
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attribute {name!r}")


class _DictFactory:
    """``dict(...)`` and ``dict.fromkeys(...)`` for templates, without exposing the type itself."""

    def __call__(self, *args, **kwargs) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs) -> dict:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def compile_chat_template(source: str) -> jinja2.Template:
    """The compiled template (cached per source text)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                       dict=_DictFactory(), namespace=_Namespace)
    return env.from_string(source)


def render_chat(source: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool,
                special_tokens: Mapping[str, str]) -> str:
    """Text of ``messages`` (``[{"role": ..., "content": ...}, ...]``) under the template ``source``; extra
    variables are the tokenizer's special tokens (``bos_token``, ...)."""
    return compile_chat_template(source).render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                                add_generation_prompt=add_generation_prompt, **special_tokens)
