"""What the classifier reads of a content: whole texts, except tool definitions, which are split into fields.

A tool definition (`{"name", "description", "inputSchema"}`) carries instructions in its description and in every
property description of its schema. Embedding the whole JSON would mix an inserted instruction with schema noise
(types, `required` lists, defaults) and with every other field; scoring each natural-language field on its own (the
tool or property name kept as context) and taking the maximum keeps an instruction hidden in one parameter's
description as visible as one at the top. Field names are bounded so a huge schema cannot fan out without limit.
"""

from __future__ import annotations

import json
import re
from typing import Final

MAX_SEGMENTS: Final = 96
# Sentence segments per prose text: a hostile 1 MB text must not become thousands of forward passes (its windows,
# capped separately by the embedder, still cover the rest). Short fragments ("OK.", list bullets) join the next.
MAX_SENTENCES: Final = 64
MIN_SENTENCE: Final = 25
_WHOLE: Final = frozenset({"prompt", "output", "tool_arguments"})
# A field of several sentences is also scored sentence by sentence: an instruction appended to a long, benign
# description is then a segment of its own rather than a fifth of one (measured: tool-poisoning TPR at 1% FPR on
# the validation split rises with it, see docs/ml.md).
_SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z<\[(\"'])|\n+")
_TEXT_KEYS: Final = ("description", "title", "summary", "instructions", "prompt")


def sentences(text: str, min_length: int = MIN_SENTENCE) -> list[str]:
    """`text` split at sentence ends and line breaks; fragments under `min_length` characters join the next one."""
    out: list[str] = []
    pending = ""
    for part in _SENTENCE.split(text):
        part = part.strip()
        if not part:
            continue
        pending = f"{pending} {part}" if pending else part
        if len(pending) >= min_length:
            out.append(pending)
            pending = ""
    if pending:
        if out:
            out[-1] = f"{out[-1]} {pending}"
        else:
            out.append(pending)
    return out


def segments(text: str, kind: str) -> list[str]:
    """The texts to score for a content of `kind` (`ContentKind` value); never empty.

    Third-party prose (tool results, documents) is scored whole (in token windows) and, when it has several
    sentences, sentence by sentence: one instruction inserted into a README or an e-mail is then a segment of its
    own instead of a tenth of a window. Prompts are scored whole: the user's own message is one utterance, and
    scoring its sentences alone flags harmless sentences lifted out of context.
    """
    if kind in _WHOLE:
        return [text]
    if kind != "tool_description":
        parts = sentences(text)
        return [text, *parts[:MAX_SENTENCES]] if len(parts) > 1 else [text]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return [text]
    if not isinstance(data, dict):
        return [text]
    out: list[str] = []
    name = data.get("name")
    prefix = f"{name}: " if isinstance(name, str) else ""
    top = [str(data[k]) for k in _TEXT_KEYS if isinstance(data.get(k), str) and data[k].strip()]
    _field(prefix, " ".join(top), out)
    if not out:
        out.append(prefix.rstrip(": ") or text)
    _walk(data.get("inputSchema", data.get("input_schema", data.get("parameters"))), "", out)
    # Strings anywhere else (annotations, vendor extensions) still get read, as one segment.
    rest = [v for k, v in data.items() if k not in {"name", "inputSchema", "input_schema", "parameters", *_TEXT_KEYS}]
    extra: list[str] = []
    _strings(rest, extra)
    if extra:
        out.append(" ".join(extra))
    return out[:MAX_SEGMENTS]


def _walk(schema: object, path: str, out: list[str]) -> None:
    if not isinstance(schema, dict) or len(out) >= MAX_SEGMENTS:
        return
    texts = [str(schema[k]) for k in _TEXT_KEYS if isinstance(schema.get(k), str) and schema[k].strip()]
    texts += (
        [v for v in schema.get("enum", []) if isinstance(v, str) and len(v) > 40]
        if isinstance(schema.get("enum"), list)
        else []
    )
    if texts:
        _field(f"{path}: " if path else "", " ".join(texts), out)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            _walk(sub, str(key), out)
    for key in ("items", "additionalProperties"):
        _walk(schema.get(key), path, out)
    for key in ("anyOf", "oneOf", "allOf"):
        variants = schema.get(key)
        if isinstance(variants, list):
            for sub in variants:
                _walk(sub, path, out)


def _field(prefix: str, text: str, out: list[str]) -> None:
    """The field as one segment, and its sentences as segments of their own when it has several."""
    if not text.strip():
        return
    out.append(prefix + text)
    parts = sentences(text, min_length=0)  # tool fields are short: every sentence on its own
    if len(parts) > 1:
        out.extend(prefix + s for s in parts)


def _strings(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            out.append(value)
    elif isinstance(value, dict):
        for sub in value.values():
            _strings(sub, out)
    elif isinstance(value, list):
        for sub in value:
            _strings(sub, out)
