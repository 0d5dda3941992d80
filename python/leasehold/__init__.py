"""Leasehold for Python.

- Seed-compatible stores: :class:`SqliteTaskSagaStore`, :class:`FakeTaskSagaStore`
  with :class:`TaskSaga`, :class:`TaskState`, :class:`Compensation` and the
  seed's exceptions.
- The richer API: :class:`Store` (fencing tokens, claim, release, reclaim,
  history, annotate, compensation results).
- The HTTP client for ``leasehold serve``: :class:`Client`, :class:`AsyncClient`
  and the worker helper ``client.lease(...)``.

Everything is backed by the Rust engine (``leasehold._native``); the rules
live there, once, for every backend.
"""

from .client import AsyncClient, AsyncLease, Client, Lease, LeaseLost, NoTaskAvailable
from .errors import (
    AlreadyExists,
    AlreadyExistsError,
    Forbidden,
    ForbiddenError,
    Internal,
    InternalError,
    InvalidInput,
    InvalidInputError,
    InvalidLeaseError,
    LeaseConflict,
    LeaseConflictError,
    LeaseholdError,
    NotFound,
    NotFoundError,
    TaskSagaError,
    Terminal,
    TerminalTaskMutationError,
    Unauthorized,
    UnauthorizedError,
    Unavailable,
    UnavailableError,
    VersionConflict,
    VersionConflictError,
)
from .seed import FakeTaskSagaStore, SqliteTaskSagaStore, TaskSagaStore, TaskSagaStoreBase
from .seed_import import SeedImportReport, import_seed_database
from .store import Store
from .types import (
    Compensation,
    CompensationRecord,
    CompensationStatus,
    Fence,
    HistoryEntry,
    HistoryKind,
    Note,
    Page,
    Task,
    TaskSaga,
    TaskState,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncLease",
    "Client",
    "Lease",
    "LeaseLost",
    "NoTaskAvailable",
    "AlreadyExistsError",
    "Compensation",
    "CompensationRecord",
    "CompensationStatus",
    "FakeTaskSagaStore",
    "Fence",
    "Forbidden",
    "ForbiddenError",
    "HistoryEntry",
    "HistoryKind",
    "Internal",
    "InternalError",
    "InvalidInput",
    "InvalidInputError",
    "InvalidLeaseError",
    "LeaseConflict",
    "LeaseConflictError",
    "LeaseholdError",
    "Note",
    "NotFound",
    "NotFoundError",
    "Page",
    "SeedImportReport",
    "SqliteTaskSagaStore",
    "Store",
    "Task",
    "TaskSaga",
    "TaskSagaError",
    "TaskSagaStore",
    "TaskSagaStoreBase",
    "TaskState",
    "Terminal",
    "TerminalTaskMutationError",
    "Unauthorized",
    "UnauthorizedError",
    "Unavailable",
    "UnavailableError",
    "VersionConflict",
    "VersionConflictError",
    "import_seed_database",
]
