"""A pydantic validation error as the one-line message of a Stalled condition."""

from __future__ import annotations

from pydantic import ValidationError


def validation_message(error: ValidationError, limit: int = 5) -> str:
    """`field.path: what is wrong; …` for the first `limit` errors."""
    parts = []
    for item in error.errors()[:limit]:
        location = ".".join(str(p) for p in item.get("loc", ()))
        message = item.get("msg", "")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
