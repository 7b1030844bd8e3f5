"""A Jinja chat template that renders a named project template (:data:`vlm_jax.data.templates.TEMPLATES`) as
:func:`~vlm_jax.data.templates.tokenize_conversation` lays it out, for exports of runs trained with one, so that
``apply_chat_template`` gives transformers users the run's prompt format.

Layout: BOS (when the tokenizer has one), the system block (a leading ``system`` message replaces the default
prompt), per user turn ``user_prefix + text + user_suffix`` (``plain`` keeps only the image placeholder), per
answer ``assistant_prefix + text + assistant_suffix`` with ``between_turns`` before the next turn, and the
assistant prefix as generation prompt. Message content is a string or transformers' list form
(``{"type": "image"}`` items become ``<image>\\n``, ``{"type": "text"}`` items their text). The text is the same as
ours; the ids are too when the tokenizer cannot merge across the template's segment boundaries (every boundary a
special or the image token, as in ``chatml`` and ``llama3``), since ours encodes segments one by one.
"""

from __future__ import annotations

import json

from vlm_jax.data.templates import IMAGE_PLACEHOLDER, Template


def _literal(text: str) -> str:
    """A Jinja string literal of ``text`` (Python escapes, which Jinja's lexer decodes)."""
    return json.dumps(text, ensure_ascii=False)


def named_chat_template(spec: Template, image_token: str = IMAGE_PLACEHOLDER) -> str:
    """The Jinja source rendering ``spec`` (module docstring); ``image_token`` is the placeholder text."""
    image = _literal(image_token)
    system_before, _, system_after = spec.system_format.partition("{system}")
    has_system = "{system}" in spec.system_format
    user_text = "text" if spec.keep_human_text else f"({image} if {image} in text else '')"
    return "".join([
        "{%- macro as_text(content) -%}{%- if content is string -%}{{ content }}{%- else -%}"
        "{%- for item in content -%}{%- if item['type'] == 'image' -%}{{ " + image + " + '\\n' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}",
        "{%- set system = " + _literal(spec.default_system) + " -%}{%- set loop_messages = messages -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}{%- set system = as_text(messages[0]['content']) -%}"
        "{%- set loop_messages = messages[1:] -%}{%- endif -%}",
        "{{- bos_token if bos_token else '' -}}",
        ("{{- " + _literal(system_before) + " + system + " + _literal(system_after) + " -}}") if has_system
        else "{{- " + _literal(spec.system_format) + " -}}",
        "{%- for message in loop_messages -%}{%- set text = as_text(message['content']) -%}",
        "{%- if message['role'] == 'user' -%}{{- " + _literal(spec.user_prefix) + " + " + user_text + " + "
        + _literal(spec.user_suffix) + " -}}",
        "{%- else -%}{{- " + _literal(spec.assistant_prefix) + " + text + " + _literal(spec.assistant_suffix)
        + " -}}{%- if not loop.last -%}{{- " + _literal(spec.between_turns) + " -}}{%- endif -%}{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}{{- " + _literal(spec.assistant_prefix) + " -}}{%- endif -%}",
    ])
