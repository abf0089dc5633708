"""The Hub's policy documents in HOME (escalation.json, retention.json): read one, or its default when the
file is absent, and name a document by the SHA-256 of its canonical JSON (RFC 8785), so each decision can
record the version it was made under. The parsing and its messages stay with each document's module."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import rfc8785

__all__ = ["load_home_document", "document_version"]

T = TypeVar("T")


def document_version(doc: object) -> str:
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


def load_home_document(home: Path, name: str, default: object, parse: Callable[[object], T],
                       fail: Callable[[str], Exception]) -> T:
    """`parse` of HOME/`name`, or of `default` without the file; a file that is not JSON is `fail`'s error."""
    path = Path(home) / name
    if not path.exists():
        return parse(default)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"cannot be read as JSON: {exc}") from None
    return parse(doc)
