"""Datetimes across the boundary: timezone-aware in, UTC out, naive rejected.

Leasehold stores UTC microseconds. A naive ``datetime`` has no offset, and
guessing one is how leases silently expire hours early, so it is refused with
``InvalidInputError`` naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .errors import InvalidInputError


def now_utc() -> datetime:
    """The wall clock, in UTC, truncated to microseconds (Python's precision)."""
    return datetime.now(UTC)


def require_aware(value: object, field: str, task_id: str | None = None) -> datetime:
    """``value`` as an aware datetime in UTC, or ``InvalidInputError``."""
    where = f" of task {task_id!r}" if task_id is not None else ""
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{field}{where} must be a timezone-aware datetime, got {type(value).__name__} {value!r}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{field}{where} must be a timezone-aware datetime "
            f"(e.g. datetime(2026, 6, 3, 10, 0, tzinfo=UTC)); got naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


def to_wire(value: object, field: str, task_id: str | None = None) -> str:
    """RFC 3339 text in UTC for an aware datetime."""
    return require_aware(value, field, task_id).isoformat()


def opt_to_wire(value: object, field: str, task_id: str | None = None) -> str | None:
    """Like :func:`to_wire`, passing ``None`` through."""
    return None if value is None else to_wire(value, field, task_id)


def from_wire(text: str) -> datetime:
    """An aware UTC datetime from RFC 3339 text with an offset."""
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_from_wire(text: str | None) -> datetime | None:
    """Like :func:`from_wire`, passing ``None`` through."""
    return None if text is None else from_wire(text)


def seconds(value: float | timedelta, field: str) -> timedelta:
    """A positive duration from seconds or a ``timedelta``."""
    if isinstance(value, timedelta):
        d = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            d = timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise InvalidInputError(f"{field} of {value!r} seconds is out of range") from None
    else:
        raise InvalidInputError(f"{field} must be seconds or a timedelta, got {value!r}")
    if d <= timedelta(0):
        raise InvalidInputError(f"{field} must be positive, got {d}")
    return d
