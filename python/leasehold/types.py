"""Value types: the seed's (``TaskSaga``, ``TaskState``, ``Compensation``) and
the SPEC's full model (``Task``, ``CompensationRecord``, ``HistoryEntry``...).

All are frozen dataclasses compared by value. Datetimes are timezone-aware
UTC. ``from_wire``/``to_wire`` convert to and from the JSON shape that the
Rust engine and the HTTP API share (the SPEC's field names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ._time import from_wire, opt_from_wire, opt_to_wire, to_wire

__all__ = [
    "Compensation",
    "CompensationRecord",
    "CompensationStatus",
    "Fence",
    "HistoryEntry",
    "HistoryKind",
    "Note",
    "Page",
    "Task",
    "TaskSaga",
    "TaskState",
    "TERMINAL_STATES",
]


class TaskState(StrEnum):
    """Where a task is in its life (a ``str``; values are the SPEC's names)."""

    PLANNED = "planned"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    QUARANTINED = "quarantined"

    @property
    def is_terminal(self) -> bool:
        """Terminal states never change again (except audit metadata)."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.COMPENSATED, TaskState.QUARANTINED}
)


class CompensationStatus(StrEnum):
    """The outcome of one compensation record."""

    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"


class HistoryKind(StrEnum):
    """What kind of change a history entry records."""

    CREATED = "created"
    IMPORTED = "imported"
    UPDATED = "updated"
    DISPATCHED = "dispatched"
    LEASED = "leased"
    RELEASED = "released"
    EXPIRED = "expired"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    QUARANTINED = "quarantined"
    ANNOTATED = "annotated"
    COMPENSATION_RECORDED = "compensation_recorded"


@dataclass(frozen=True)
class Compensation:
    """A cleanup or rollback action registered for a task saga (the seed's type)."""

    kind: str
    target: str
    reason: str

    def to_wire(self) -> dict[str, Any]:
        """The SPEC's ``NewCompensation`` JSON."""
        return {"kind": self.kind, "target": self.target, "reason": self.reason}


@dataclass(frozen=True)
class CompensationRecord:
    """A stored compensation with its outcome."""

    kind: str
    target: str
    reason: str
    status: CompensationStatus
    detail: str | None
    updated_at: datetime

    @property
    def compensation(self) -> Compensation:
        """The seed's view: kind, target and reason."""
        return Compensation(kind=self.kind, target=self.target, reason=self.reason)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CompensationRecord:
        """Build from the engine's JSON."""
        return cls(
            kind=d["kind"],
            target=d["target"],
            reason=d["reason"],
            status=CompensationStatus(d["status"]),
            detail=d.get("detail"),
            updated_at=from_wire(d["updated_at"]),
        )

    def to_wire(self) -> dict[str, Any]:
        """The engine's JSON."""
        return {
            "kind": self.kind,
            "target": self.target,
            "reason": self.reason,
            "status": self.status.value,
            "detail": self.detail,
            "updated_at": to_wire(self.updated_at, "compensation updated_at"),
        }


@dataclass(frozen=True)
class Note:
    """An operator's or worker's note on a task."""

    author: str
    note: str
    at: datetime

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Note:
        """Build from the engine's JSON."""
        return cls(author=d["author"], note=d["note"], at=from_wire(d["at"]))

    def to_wire(self) -> dict[str, Any]:
        """The engine's JSON."""
        return {"author": self.author, "note": self.note, "at": to_wire(self.at, "note at")}


@dataclass(frozen=True)
class Fence:
    """(owner, token) presented by a worker on every fenced write."""

    owner: str
    token: int

    def to_wire(self) -> dict[str, Any]:
        """The engine's JSON."""
        return {"owner": self.owner, "token": self.token}


@dataclass(frozen=True)
class Task:
    """A task saga with every SPEC field (the richer API's type)."""

    task_id: str
    saga_id: str
    state: TaskState
    queue: str = "default"
    priority: int = 0
    issue: int | None = None
    branch: str | None = None
    worktree: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    compensations: tuple[CompensationRecord, ...] = ()
    notes: tuple[Note, ...] = ()
    lease_owner: str | None = None
    lease_token: int = 0
    lease_acquired_at: datetime | None = None
    lease_expires_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    attempts: int = 0
    terminal_reason: str | None = None
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the state is terminal."""
        return self.state.is_terminal

    @property
    def fence(self) -> Fence | None:
        """The current lease's fence, or ``None`` without a lease."""
        if self.lease_owner is None or self.state is not TaskState.RUNNING:
            return None
        return Fence(self.lease_owner, self.lease_token)

    def is_stale(self, now: datetime) -> bool:
        """Not terminal and the lease expired at or before ``now``."""
        return (
            not self.is_terminal
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Task:
        """Build from the engine's JSON."""
        return cls(
            task_id=d["task_id"],
            saga_id=d["saga_id"],
            state=TaskState(d["state"]),
            queue=d["queue"],
            priority=d["priority"],
            issue=d.get("issue"),
            branch=d.get("branch"),
            worktree=d.get("worktree"),
            metadata=d.get("metadata") or {},
            compensations=tuple(CompensationRecord.from_wire(c) for c in d.get("compensations", [])),
            notes=tuple(Note.from_wire(n) for n in d.get("notes", [])),
            lease_owner=d.get("lease_owner"),
            lease_token=d.get("lease_token", 0),
            lease_acquired_at=opt_from_wire(d.get("lease_acquired_at")),
            lease_expires_at=opt_from_wire(d.get("lease_expires_at")),
            last_heartbeat_at=opt_from_wire(d.get("last_heartbeat_at")),
            attempts=d.get("attempts", 0),
            terminal_reason=d.get("terminal_reason"),
            version=d.get("version", 0),
            created_at=opt_from_wire(d.get("created_at")),
            updated_at=opt_from_wire(d.get("updated_at")),
        )

    def to_wire(self) -> dict[str, Any]:
        """The engine's JSON. Store-owned fields (version, created/updated) are
        sent as they are; the store overwrites them."""
        tid = self.task_id
        epoch = "1970-01-01T00:00:00Z"
        return {
            "task_id": tid,
            "saga_id": self.saga_id,
            "state": TaskState(self.state).value,
            "queue": self.queue,
            "priority": self.priority,
            "issue": self.issue,
            "branch": self.branch,
            "worktree": self.worktree,
            "metadata": self.metadata,
            "compensations": [c.to_wire() for c in self.compensations],
            "notes": [n.to_wire() for n in self.notes],
            "lease_owner": self.lease_owner,
            "lease_token": self.lease_token,
            "lease_acquired_at": opt_to_wire(self.lease_acquired_at, "lease_acquired_at", tid),
            "lease_expires_at": opt_to_wire(self.lease_expires_at, "lease_expires_at", tid),
            "last_heartbeat_at": opt_to_wire(self.last_heartbeat_at, "last_heartbeat_at", tid),
            "attempts": self.attempts,
            "terminal_reason": self.terminal_reason,
            "version": self.version or 1,
            "created_at": opt_to_wire(self.created_at, "created_at", tid) or epoch,
            "updated_at": opt_to_wire(self.updated_at, "updated_at", tid) or epoch,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One change to a task, recorded in the same transaction as the change."""

    task_id: str
    kind: HistoryKind
    at: datetime
    actor: str
    from_state: TaskState | None
    to_state: TaskState
    lease_token: int
    detail: str | None

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> HistoryEntry:
        """Build from the engine's JSON."""
        return cls(
            task_id=d["task_id"],
            kind=HistoryKind(d["kind"]),
            at=from_wire(d["at"]),
            actor=d["actor"],
            from_state=TaskState(d["from_state"]) if d.get("from_state") else None,
            to_state=TaskState(d["to_state"]),
            lease_token=d.get("lease_token", 0),
            detail=d.get("detail"),
        )


@dataclass(frozen=True)
class Page:
    """One page of ``list``: tasks in creation order and the cursor for the next."""

    tasks: tuple[Task, ...]
    next_cursor: str | None

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Page:
        """Build from the engine's JSON."""
        return cls(
            tasks=tuple(Task.from_wire(t) for t in d["tasks"]),
            next_cursor=d.get("next_cursor"),
        )


@dataclass(frozen=True)
class TaskSaga:
    """Durable task identity and lifecycle metadata: the seed's type.

    Equality compares the seed's fields only (task_id ... terminal_reason), so
    code and tests written against the seed keep comparing sagas as before.
    The extra fields after them come from the store (fencing token, attempts,
    version read, ...) and take no part in ``==``; the compatibility store
    uses ``version`` and ``lease_token`` to make its writes conditional on
    what it read.
    """

    task_id: str
    saga_id: str
    state: TaskState
    issue: int | None = None
    branch: str | None = None
    worktree: str | None = None
    compensations: tuple[Compensation, ...] = ()
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    terminal_reason: str | None = None
    # Store-provided, not part of the seed's value.
    lease_token: int = field(default=0, compare=False, repr=False)
    attempts: int = field(default=0, compare=False, repr=False)
    lease_acquired_at: datetime | None = field(default=None, compare=False, repr=False)
    version: int = field(default=0, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """Whether the state is terminal."""
        return TaskState(self.state).is_terminal
