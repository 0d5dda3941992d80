"""The richer API: every SPEC operation on an embedded store, with Pythonic names.

``Store.sqlite(path)`` opens the SQLite backend (WAL, durable on return),
``Store.memory()`` the in-memory model. Each call is one atomic operation of
the Rust engine: it fully applies or raises a :class:`~leasehold.LeaseholdError`
subclass and changes nothing.

Time: every write takes ``at`` (an aware datetime); when omitted, the wall
clock (or the ``clock`` given to the store) is used. Tests pass fixed instants.
"""

from __future__ import annotations

import builtins

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from . import _native
from ._time import now_utc, seconds, to_wire
from .errors import InvalidInputError, error_from_code
from .types import (
    Compensation,
    CompensationStatus,
    Fence,
    HistoryEntry,
    Page,
    Task,
    TaskState,
)

__all__ = ["Clock", "Store", "RECLAIM_MAX_ATTEMPTS_DEFAULT"]

#: A source of aware datetimes ("now").
Clock = Callable[[], datetime]

#: After this many leases, ``reclaim`` quarantines a stale task (SPEC default).
RECLAIM_MAX_ATTEMPTS_DEFAULT = 5

T = TypeVar("T")


def call(fn: Callable[..., T], *args: Any) -> T:
    """Call the native engine, turning ``NativeError(code, msg)`` into the
    exception class for ``code``."""
    try:
        return fn(*args)
    except _native.NativeError as e:
        code, message = e.args if len(e.args) == 2 else ("internal", str(e))
        raise error_from_code(code, message) from None


def check_task_id(task_id: object) -> str:
    """``task_id`` if it is a ``str``; otherwise ``InvalidInputError`` (the engine
    checks the charset and length)."""
    if not isinstance(task_id, str):
        raise InvalidInputError(f"task_id must be a str, got {type(task_id).__name__} {task_id!r}")
    return task_id


def check_count(value: object, field: str, low: int = 0, high: int = 2**32 - 1) -> int:
    """An ``int`` in ``low..=high`` (bools refused), else ``InvalidInputError``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInputError(f"{field} must be an integer from {low} to {high}, got {value!r}")
    return value


def _fence(fence: Fence | None, task_id: str) -> dict[str, Any] | None:
    if fence is None:
        return None
    if not isinstance(fence, Fence):
        raise InvalidInputError(
            f"fence for task {task_id!r} must be a leasehold.Fence(owner, token), got {fence!r}"
        )
    return fence.to_wire()


def _compensation(c: Compensation | None, task_id: str) -> dict[str, Any] | None:
    if c is None:
        return None
    if not all(hasattr(c, a) for a in ("kind", "target", "reason")):
        raise InvalidInputError(
            f"compensation for task {task_id!r} must have kind, target and reason, got {c!r}"
        )
    return {"kind": c.kind, "target": c.target, "reason": c.reason}


class Store:
    """An embedded Leasehold store (SQLite or in-memory) with the SPEC operations."""

    def __init__(
        self, native: _native.NativeStore, *, actor: str = "python", clock: Clock | None = None
    ) -> None:
        self._native = native
        self.actor = actor
        self._clock: Clock = clock or now_utc

    @classmethod
    def sqlite(cls, path: str | Path, *, actor: str = "python", clock: Clock | None = None) -> Store:
        """Open (creating it and its parent folders) the SQLite database at ``path``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return cls(call(_native.NativeStore.sqlite, str(p)), actor=actor, clock=clock)

    @classmethod
    def memory(cls, *, actor: str = "python", clock: Clock | None = None) -> Store:
        """A fresh in-memory store: the executable model, lost when dropped."""
        return cls(_native.NativeStore.memory(), actor=actor, clock=clock)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``memory``."""
        return self._native.kind

    # -- helpers -----------------------------------------------------------

    def _at(self, at: datetime | None, task_id: str | None = None) -> str:
        return to_wire(self._clock() if at is None else at, "at", task_id)

    def _apply(self, task_id: str, cmd: dict[str, Any], at: datetime | None) -> Task:
        check_task_id(task_id)
        raw = call(self._native.apply, task_id, json.dumps(cmd), self._at(at, task_id), self.actor)
        return Task.from_wire(json.loads(raw))

    @staticmethod
    def _tasks(raw: str) -> list[Task]:
        return [Task.from_wire(t) for t in json.loads(raw)]

    # -- writes ------------------------------------------------------------

    def create(
        self,
        task_id: str,
        saga_id: str,
        *,
        queue: str | None = None,
        priority: int | None = None,
        issue: int | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        metadata: dict[str, Any] | None = None,
        compensations: Iterable[Compensation] = (),
        at: datetime | None = None,
    ) -> Task:
        """Insert a new ``planned`` task. ``AlreadyExistsError`` if the task id
        or saga id is taken (the existing task is unchanged)."""
        new = {
            "task_id": task_id,
            "saga_id": saga_id,
            "queue": queue,
            "priority": priority,
            "issue": issue,
            "branch": branch,
            "worktree": worktree,
            "metadata": metadata,
            "compensations": [_compensation(c, task_id) for c in compensations],
        }
        raw = call(self._native.create, json.dumps(new), self._at(at, task_id), self.actor)
        return Task.from_wire(json.loads(raw))

    def put(self, task: Task, *, expected_version: int | None = None, at: datetime | None = None) -> Task:
        """Upsert a whole task; compare-and-set when ``expected_version`` is given
        (0: must not exist yet). See the SPEC's ``put`` for what may change."""
        if not isinstance(task, Task):
            raise InvalidInputError(f"put takes a leasehold.Task, got {type(task).__name__}")
        raw = call(
            self._native.put,
            json.dumps(task.to_wire()),
            expected_version,
            self._at(at, task.task_id),
            self.actor,
        )
        return Task.from_wire(json.loads(raw))

    def dispatch(self, task_id: str, *, at: datetime | None = None) -> Task:
        """``planned`` → ``dispatched``."""
        return self._apply(task_id, {"op": "dispatch"}, at)

    def acquire_lease(
        self, task_id: str, *, owner: str, expires_at: datetime, at: datetime | None = None
    ) -> Task:
        """Lease the task until ``expires_at``: → ``running`` with a new fencing
        token (``task.fence``)."""
        cmd = {"op": "acquire", "owner": owner, "expires_at": to_wire(expires_at, "expires_at", task_id)}
        return self._apply(task_id, cmd, at)

    def claim(
        self,
        owner: str,
        *,
        queues: Sequence[str] = (),
        ttl: float | timedelta = 30.0,
        limit: int = 1,
        at: datetime | None = None,
    ) -> list[Task]:
        """Atomically lease up to ``limit`` claimable tasks from ``queues``
        (none: ``default``), highest priority first. Empty when none."""
        if isinstance(queues, str):
            queues = [queues]
        d = seconds(ttl, "ttl")
        micros = check_count((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds, "ttl in microseconds", 1, 2**63 - 1)
        check_count(limit, "claim limit")
        raw = call(self._native.claim, owner, list(queues), micros, limit, self._at(at), self.actor)
        return self._tasks(raw)

    def heartbeat(
        self, task_id: str, *, fence: Fence, expires_at: datetime, at: datetime | None = None
    ) -> Task:
        """Extend the lease held under ``fence`` to ``expires_at``."""
        cmd = {
            "op": "heartbeat",
            "fence": _fence(fence, task_id),
            "expires_at": to_wire(expires_at, "expires_at", task_id),
        }
        return self._apply(task_id, cmd, at)

    def release(self, task_id: str, *, fence: Fence, at: datetime | None = None) -> Task:
        """Give the lease back: → ``dispatched``; the token stays as high-water mark."""
        return self._apply(task_id, {"op": "release", "fence": _fence(fence, task_id)}, at)

    def complete(
        self, task_id: str, *, reason: str | None = None, fence: Fence | None = None, at: datetime | None = None
    ) -> Task:
        """→ ``completed``. Workers pass their ``fence``; operators may omit it."""
        return self._apply(task_id, {"op": "complete", "reason": reason, "fence": _fence(fence, task_id)}, at)

    def compensate(
        self, task_id: str, *, reason: str | None = None, fence: Fence | None = None, at: datetime | None = None
    ) -> Task:
        """→ ``compensated``."""
        return self._apply(task_id, {"op": "compensate", "reason": reason, "fence": _fence(fence, task_id)}, at)

    def fail(
        self,
        task_id: str,
        *,
        reason: str,
        compensation: Compensation | None = None,
        fence: Fence | None = None,
        at: datetime | None = None,
    ) -> Task:
        """→ ``failed``, appending ``compensation`` if given. Without any
        compensation record: ``LeaseConflictError`` naming "compensation"."""
        cmd = {
            "op": "fail",
            "reason": reason,
            "compensation": _compensation(compensation, task_id),
            "fence": _fence(fence, task_id),
        }
        return self._apply(task_id, cmd, at)

    def quarantine(
        self, task_id: str, *, reason: str, fence: Fence | None = None, at: datetime | None = None
    ) -> Task:
        """→ ``quarantined``; a reason is required."""
        return self._apply(task_id, {"op": "quarantine", "reason": reason, "fence": _fence(fence, task_id)}, at)

    def reclaim(
        self, *, now: datetime | None = None, max_attempts: int = RECLAIM_MAX_ATTEMPTS_DEFAULT
    ) -> list[Task]:
        """Every task stale at ``now``: back to ``dispatched``, or ``quarantined``
        once it has had ``max_attempts`` leases. Returns the changed tasks."""
        check_count(max_attempts, "max_attempts")
        return self._tasks(call(self._native.reclaim, max_attempts, self._at(now), self.actor))

    def annotate(self, task_id: str, *, author: str, note: str, at: datetime | None = None) -> Task:
        """Append a note (allowed on terminal tasks)."""
        return self._apply(task_id, {"op": "annotate", "author": author, "note": note}, at)

    def record_compensation(
        self,
        task_id: str,
        index: int,
        *,
        status: CompensationStatus | str,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> Task:
        """Set the outcome of compensation ``index`` (allowed on terminal tasks)."""
        try:
            st = CompensationStatus(status)
        except ValueError:
            raise InvalidInputError(
                f"compensation status for task {task_id!r} must be pending, applied or failed, got {status!r}"
            ) from None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise InvalidInputError(f"compensation index for task {task_id!r} must be an int >= 0, got {index!r}")
        cmd = {"op": "record_compensation", "index": index, "status": st.value, "detail": detail}
        return self._apply(task_id, cmd, at)

    # -- reads -------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        """One task, or ``None``."""
        raw = call(self._native.get, check_task_id(task_id))
        return None if raw is None else Task.from_wire(json.loads(raw))

    def require(self, task_id: str) -> Task:
        """One task, or ``NotFoundError``."""
        task = self.get(task_id)
        if task is None:
            raise error_from_code("not_found", f"task {task_id!r} not found")
        return task

    def list(
        self,
        *,
        states: Iterable[TaskState | str] = (),
        queue: str | None = None,
        owner: str | None = None,
        stale_at: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """One page of tasks matching every given filter, in creation order."""
        filt = {
            "states": [TaskState(s).value for s in states],
            "queue": queue,
            "owner": owner,
            "stale_at": None if stale_at is None else to_wire(stale_at, "stale_at"),
        }
        if limit is not None:
            check_count(limit, "list limit")
        return Page.from_wire(json.loads(call(self._native.list, json.dumps(filt), cursor, limit)))

    def list_in_flight(self) -> builtins.list[Task]:
        """Every non-terminal task, in creation order."""
        return self._tasks(call(self._native.list_in_flight))

    def list_stale(self, *, now: datetime) -> builtins.list[Task]:
        """Non-terminal tasks whose lease expired at or before ``now``, oldest expiry first."""
        return self._tasks(call(self._native.list_stale, to_wire(now, "now")))

    def counts(self) -> dict[TaskState, int]:
        """Tasks per state (every state present)."""
        raw: dict[str, int] = json.loads(call(self._native.counts))
        return {TaskState(k): v for k, v in raw.items()}

    def history(self, task_id: str) -> builtins.list[HistoryEntry]:
        """Every change to the task, oldest first; ``NotFoundError`` if it does not exist."""
        check_task_id(task_id)
        return [HistoryEntry.from_wire(h) for h in json.loads(call(self._native.history, task_id))]
