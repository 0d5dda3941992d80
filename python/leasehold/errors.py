"""Exceptions: the seed's three classes, and one class per SPEC error code.

The hierarchy keeps code written against the seed working unchanged while the
richer API can match on precise SPEC codes:

- ``TaskSagaError`` (the seed's base, a ``RuntimeError``)
  - ``LeaseholdError``: every error from Leasehold; ``.code`` is the stable
    SPEC code (``lease_conflict``, ``terminal``...), ``.message`` the text.
    - ``LeaseConflictError`` (``lease_conflict``, the seed's name)
      - ``AlreadyExistsError`` (``already_exists``): the seed raised a lease
        conflict for a duplicate create, so this still is one.
      - ``VersionConflictError`` (``version_conflict``): a compare-and-set
        lost to a change made in between; the seed raised a lease conflict.
      - ``InvalidLeaseError`` (``invalid_input``, also an
        ``InvalidInputError``): a lease whose expiry is not after its
        acquisition, which the seed reported as a lease conflict.
    - ``TerminalTaskMutationError`` (``terminal``, the seed's name)
    - ``NotFoundError`` (``not_found``, also a ``KeyError`` as in the seed)
    - ``InvalidInputError`` (``invalid_input``, also a ``ValueError``)
    - ``UnauthorizedError``, ``ForbiddenError``, ``UnavailableError``
      (retryable), ``InternalError``.

The SPEC's short names (``LeaseConflict``, ``Terminal``, ``NotFound``...) are
aliases of the same classes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlreadyExists",
    "AlreadyExistsError",
    "Forbidden",
    "ForbiddenError",
    "Internal",
    "InternalError",
    "InvalidInput",
    "InvalidInputError",
    "InvalidLeaseError",
    "LeaseConflict",
    "LeaseConflictError",
    "LeaseholdError",
    "NotFound",
    "NotFoundError",
    "TaskSagaError",
    "Terminal",
    "TerminalTaskMutationError",
    "Unauthorized",
    "UnauthorizedError",
    "Unavailable",
    "UnavailableError",
    "VersionConflict",
    "VersionConflictError",
    "error_from_code",
]


class TaskSagaError(RuntimeError):
    """Base error for task saga transition failures (the seed's base class)."""


class LeaseholdError(TaskSagaError):
    """A Leasehold error carrying a stable SPEC ``code`` and a human ``message``."""

    code: ClassVar[str] = "internal"
    #: HTTP status the API uses for this code.
    http_status: ClassVar[int] = 500
    #: Whether retrying the same call later may succeed.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class LeaseConflictError(LeaseholdError):
    """The caller does not hold the current lease, someone else holds a live one,
    the task changed in between, or a failure lacks a compensation record."""

    code = "lease_conflict"
    http_status = 409


class TerminalTaskMutationError(LeaseholdError):
    """The task is terminal; only audit metadata may change."""

    code = "terminal"
    http_status = 409


class AlreadyExistsError(LeaseConflictError):
    """A task with that task id or saga id exists already; it was left unchanged."""

    code = "already_exists"


class VersionConflictError(LeaseConflictError):
    """A compare-and-set write found a version other than the one it read."""

    code = "version_conflict"


class NotFoundError(LeaseholdError, KeyError):
    """The task does not exist (a ``KeyError``, as the seed raised)."""

    code = "not_found"
    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class InvalidInputError(LeaseholdError, ValueError):
    """Malformed or out-of-range input; nothing was changed."""

    code = "invalid_input"
    http_status = 422


class InvalidLeaseError(InvalidInputError, LeaseConflictError):
    """A lease expiry not after its acquisition time. ``invalid_input`` in the
    SPEC, and a ``LeaseConflictError`` for code written against the seed."""

    code = "invalid_input"
    http_status = 422


class UnauthorizedError(LeaseholdError):
    """No credentials, or credentials that are not recognised."""

    code = "unauthorized"
    http_status = 401


class ForbiddenError(LeaseholdError):
    """The credentials are valid but do not allow this call."""

    code = "forbidden"
    http_status = 403


class UnavailableError(LeaseholdError):
    """The store or server is unreachable or busy; retrying may succeed."""

    code = "unavailable"
    http_status = 503
    retryable = True


class InternalError(LeaseholdError):
    """A bug or an unexpected store failure."""

    code = "internal"
    http_status = 500


# The SPEC's names for the same classes.
LeaseConflict = LeaseConflictError
Terminal = TerminalTaskMutationError
AlreadyExists = AlreadyExistsError
VersionConflict = VersionConflictError
NotFound = NotFoundError
InvalidInput = InvalidInputError
Unauthorized = UnauthorizedError
Forbidden = ForbiddenError
Unavailable = UnavailableError
Internal = InternalError

_BY_CODE: dict[str, type[LeaseholdError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        LeaseConflictError,
        TerminalTaskMutationError,
        VersionConflictError,
        InvalidInputError,
        UnauthorizedError,
        ForbiddenError,
        UnavailableError,
        InternalError,
    )
}


def error_from_code(code: str, message: str) -> LeaseholdError:
    """The exception for a SPEC ``code``; an unknown code becomes ``InternalError``
    with the code kept in the message."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return InternalError(f"[{code}] {message}")
    return cls(message)
