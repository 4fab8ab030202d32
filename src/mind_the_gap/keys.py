"""Content keys: every cache names what it stores by a digest of everything that thing depends on."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_key(parts: Any, length: int, **json_options: Any) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``json.dumps(parts, **json_options)``.

    Each cache passes the JSON options its keys were first made with, so that a key found on disk stays valid.
    """
    return hashlib.sha256(json.dumps(parts, **json_options).encode()).hexdigest()[:length]
