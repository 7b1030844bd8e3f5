"""Byte format of one raw example inside our ArrayRecord shards (DESIGN.md "Data", data contract).

A record is a msgpack map ``{"format": RECORD_FORMAT, "id": str, "image": bytes | None,
"conversations": [{"from": str, "value": str}, ...], "meta": dict}``. The image stays encoded
(PNG/JPEG bytes as read from disk), so shards are about as large as the image files and decoding
happens in the Grain workers. msgpack keeps bytes as bytes (no base64) and needs no schema.
"""

from typing import Any

import msgpack

RECORD_FORMAT = "vlm_jax.raw_example.v1"

_REQUIRED_KEYS = ("id", "image", "conversations")


def encode_example(example: dict[str, Any]) -> bytes:
    """Serialises a raw example (data contract) to record bytes; fails on missing keys/bad types."""
    missing = [k for k in _REQUIRED_KEYS if k not in example]
    if missing:
        raise ValueError(f"raw example lacks keys {missing}: {sorted(example)}")
    image = example["image"]
    if image is not None and not isinstance(image, bytes):
        raise TypeError(f"example {example['id']!r}: image must be bytes or None, got {type(image)}")
    record = {
        "format": RECORD_FORMAT,
        "id": str(example["id"]),
        "image": image,
        "conversations": list(example["conversations"]),
        "meta": dict(example.get("meta") or {}),
    }
    return msgpack.packb(record, use_bin_type=True)


def decode_example(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_example`: record bytes -> raw example dict."""
    try:
        record = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise ValueError(f"not a {RECORD_FORMAT} record ({type(e).__name__}: {e})") from e
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"not a {RECORD_FORMAT} record (format={found!r})")
    del record["format"]
    return record
