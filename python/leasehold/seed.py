"""Drop-in replacements for the seed's task-saga stores, backed by the Rust engine.

``SqliteTaskSagaStore(path)`` and ``FakeTaskSagaStore()`` keep the seed's
methods, keyword arguments, value types and exceptions. The rules are the
engine's (the SPEC): every transition is one atomic operation of the store.

How a transition stays safe for subclasses (the seed's contract): each one
first reads through the overridable ``get``/``_require_mutable``, checks what
it read, then makes one atomic, conditional write built from what it read:

- ``acquire_lease``: the engine refuses while any unexpired lease exists.
- ``heartbeat``: fenced by the owner *and the fencing token read*, so a lease
  re-acquired in between (even by the same owner) is not extended.
- ``mark_*`` on a task read with a lease: fenced by the lease read (owner and
  token); on a task read without one: compare-and-set on the version read.
- ``put``: refuses to change or clear a lease and to change a terminal task.

A change made in between therefore raises ``LeaseConflictError`` (or
``TerminalTaskMutationError`` when the task became terminal) and changes
nothing.

Two representation notes (see ``docs/python.md``):

- The seed allowed ``put`` of a ``RUNNING`` saga with no lease; the SPEC
  does not (running means leased). Such a saga is stored as ``dispatched``
  with a marker in its metadata and shown back as ``RUNNING`` until its
  first lease.
- A saga written by ``put`` with a lease gets fencing token 1 and one attempt,
  like an import of the seed's database.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import _native
from ._time import now_utc, opt_from_wire, require_aware, to_wire
from .errors import (
    InvalidInputError,
    InvalidLeaseError,
    LeaseConflictError,
    NotFoundError,
    TerminalTaskMutationError,
    VersionConflictError,
)
from .seed_import import SeedImportReport, has_seed_table, import_seed_database
from .store import Clock, Store, call, check_task_id
from .types import Compensation, Fence, TaskSaga, TaskState

__all__ = ["FakeTaskSagaStore", "SqliteTaskSagaStore", "TaskSagaStore", "TaskSagaStoreBase", "SEED_STATE_KEY"]

#: Metadata key marking a seed ``RUNNING`` saga stored without a lease.
SEED_STATE_KEY = "leasehold.seed_state"

_ONE_MICRO = timedelta(microseconds=1)
#: How often ``put`` redoes its merge when the task changes under it.
_PUT_ATTEMPTS_MAX = 8


@runtime_checkable
class TaskSagaStore(Protocol):
    """The seed's persistence boundary, for type hints written against it."""

    def put(self, saga: TaskSaga) -> TaskSaga:
        """Persist ``saga`` and return the stored shape."""
        ...

    def create(
        self,
        *,
        task_id: str,
        saga_id: str,
        issue: int | None = ...,
        branch: str | None = ...,
        worktree: str | None = ...,
        compensations: Iterable[Compensation] = ...,
    ) -> TaskSaga:
        """Create a planned, leaseable task saga."""
        ...

    def acquire_lease(self, task_id: str, *, owner_id: str, expires_at: datetime, acquired_at: datetime) -> TaskSaga:
        """Acquire a task lease and mark the saga running."""
        ...

    def heartbeat(self, task_id: str, *, owner_id: str, heartbeat_at: datetime, expires_at: datetime) -> TaskSaga:
        """Extend the active lease before it expires."""
        ...

    def list_stale(self, *, now: datetime) -> tuple[TaskSaga, ...]:
        """Non-terminal sagas with expired leases."""
        ...

    def mark_completed(self, task_id: str, *, reason: str | None = None) -> TaskSaga:
        """Mark a task completed."""
        ...

    def mark_failed(self, task_id: str, *, reason: str, compensation: Compensation | None = None) -> TaskSaga:
        """Mark a task failed, requiring a compensation record."""
        ...

    def mark_compensated(self, task_id: str, *, reason: str | None = None) -> TaskSaga:
        """Mark a task compensated."""
        ...

    def mark_quarantined(self, task_id: str, *, reason: str) -> TaskSaga:
        """Mark a task quarantined."""
        ...

    def get(self, task_id: str) -> TaskSaga | None:
        """One saga by task id."""
        ...

    def list_in_flight(self) -> tuple[TaskSaga, ...]:
        """Non-terminal sagas in insertion order."""
        ...


def _saga_from_core(d: dict[str, Any]) -> TaskSaga:
    state = TaskState(d["state"])
    meta = d.get("metadata") or {}
    if state is TaskState.DISPATCHED and d.get("lease_token", 0) == 0 and meta.get(SEED_STATE_KEY) == "running":
        state = TaskState.RUNNING
    return TaskSaga(
        task_id=d["task_id"],
        saga_id=d["saga_id"],
        state=state,
        issue=d.get("issue"),
        branch=d.get("branch"),
        worktree=d.get("worktree"),
        compensations=tuple(
            Compensation(kind=c["kind"], target=c["target"], reason=c["reason"])
            for c in d.get("compensations", [])
        ),
        lease_owner=d.get("lease_owner"),
        lease_expires_at=opt_from_wire(d.get("lease_expires_at")),
        last_heartbeat_at=opt_from_wire(d.get("last_heartbeat_at")),
        terminal_reason=d.get("terminal_reason"),
        lease_token=d.get("lease_token", 0),
        attempts=d.get("attempts", 0),
        lease_acquired_at=opt_from_wire(d.get("lease_acquired_at")),
        version=d.get("version", 0),
    )


def _check_compensations(values: Iterable[Any], task_id: str) -> list[Compensation]:
    out = []
    for c in values:
        if not all(isinstance(getattr(c, a, None), str) for a in ("kind", "target", "reason")):
            raise InvalidInputError(
                f"compensations of task {task_id!r} must be Compensation(kind, target, reason), got {c!r}"
            )
        out.append(Compensation(kind=c.kind, target=c.target, reason=c.reason))
    return out


def _unleased_running(saga: TaskSaga) -> bool:
    return (
        TaskState(saga.state) is TaskState.RUNNING
        and saga.lease_owner is None
        and saga.lease_expires_at is None
    )


class TaskSagaStoreBase:
    """The seed's store API over a Leasehold engine (shared by both classes).

    ``clock`` supplies the time of writes whose seed signature takes none
    (``put``, ``create`` and the ``mark_*`` markers); it defaults to the wall
    clock. ``leasehold`` gives the richer API over the same store.
    """

    def __init__(self, native: _native.NativeStore, *, clock: Clock | None = None, actor: str = "python") -> None:
        self._clock: Clock = clock or now_utc
        #: The richer API (fencing tokens, claim, history...) on the same store.
        self.leasehold = Store(native, actor=actor, clock=self._clock)
        self._native = native
        self._actor = actor

    # -- plumbing ----------------------------------------------------------

    def _now(self) -> str:
        return to_wire(self._clock(), "clock()")

    def _core(self, task_id: str) -> dict[str, Any] | None:
        raw = call(self._native.get, check_task_id(task_id))
        return None if raw is None else json.loads(raw)

    def _apply(self, task_id: str, cmd: dict[str, Any], at: str) -> TaskSaga:
        raw = call(self._native.apply, task_id, json.dumps(cmd), at, self._actor)
        return _saga_from_core(json.loads(raw))

    def _put_core(self, core: dict[str, Any], expected_version: int | None) -> TaskSaga:
        raw = call(self._native.put, json.dumps(core), expected_version, self._now(), self._actor)
        return _saga_from_core(json.loads(raw))

    # -- the seed's API ----------------------------------------------------

    def get(self, task_id: str) -> TaskSaga | None:
        """Return one saga by task id, or ``None``."""
        core = self._core(task_id)
        return None if core is None else _saga_from_core(core)

    def _require_mutable(self, task_id: str) -> TaskSaga:
        """The saga, or ``KeyError`` when missing, ``TerminalTaskMutationError``
        when terminal. Every transition reads through this (and ``get``)."""
        saga = self.get(task_id)
        if saga is None:
            raise NotFoundError(f"task {task_id!r} not found")
        if saga.is_terminal:
            raise TerminalTaskMutationError(
                f"task {task_id!r} is terminal ({TaskState(saga.state).value}) and cannot change"
            )
        return saga

    def put(self, saga: TaskSaga) -> TaskSaga:
        """Persist ``saga`` (insert or update) and return the stored shape.

        Refused: clearing or changing a lease (``LeaseConflictError``; use the
        lease operations), changing a terminal task other than its
        ``terminal_reason`` (``TerminalTaskMutationError``), a ``FAILED`` saga
        without compensation (``LeaseConflictError``)."""
        if not isinstance(saga, TaskSaga):
            raise InvalidInputError(f"put takes a TaskSaga, got {type(saga).__name__}")
        tid = saga.task_id
        try:
            state = TaskState(saga.state)
        except ValueError:
            raise InvalidInputError(f"state of task {tid!r} must be a TaskState, got {saga.state!r}") from None
        comps = _check_compensations(saga.compensations, tid)
        owner = saga.lease_owner
        expires = None if saga.lease_expires_at is None else require_aware(saga.lease_expires_at, "lease_expires_at", tid)
        beat = None if saga.last_heartbeat_at is None else require_aware(saga.last_heartbeat_at, "last_heartbeat_at", tid)
        now = self._now()
        marker = _unleased_running(saga)
        # The write is a compare-and-set on the version this method read, so
        # fields the seed does not know (notes, compensation results,
        # metadata, queue...) are never overwritten with an older copy; the
        # seed's fields are last-writer-wins as in the seed, so on a conflict
        # the merge is simply redone on the new version.
        for _ in range(_PUT_ATTEMPTS_MAX):
            stored = self._core(tid)
            if stored is None:
                core = self._new_core(saga, TaskState.DISPATCHED if marker else state, comps, now, expires, beat)
                if marker:
                    core["metadata"][SEED_STATE_KEY] = "running"
                expected = 0
            else:
                core = self._merge(stored, saga, state, marker, comps, now, owner, expires, beat)
                expected = stored["version"]
            try:
                return self._put_core(core, expected)
            except VersionConflictError:
                continue
        raise VersionConflictError(
            f"task {tid!r} kept changing while being written ({_PUT_ATTEMPTS_MAX} attempts); try again"
        )

    def _merge(
        self,
        stored: dict[str, Any],
        saga: TaskSaga,
        state: TaskState,
        marker: bool,
        comps: list[Compensation],
        now: str,
        owner: str | None,
        expires: datetime | None,
        beat: datetime | None,
    ) -> dict[str, Any]:
        """The stored task with the seed's fields of ``saga`` written over it."""
        core = dict(stored)
        core_state = TaskState.DISPATCHED if marker else state
        if marker and TaskState(stored["state"]) is TaskState.RUNNING:
            # Written back as read from a leased task: keep it running (and
            # let the engine refuse the cleared lease).
            core_state = TaskState.RUNNING
        core.update(
            saga_id=saga.saga_id,
            state=core_state.value,
            issue=saga.issue,
            branch=saga.branch,
            worktree=saga.worktree,
            terminal_reason=saga.terminal_reason,
            compensations=self._merge_compensations(stored.get("compensations", []), comps, now),
        )
        self._merge_lease(core, stored, owner, expires, beat)
        meta = dict(stored.get("metadata") or {})
        if marker and core_state is TaskState.DISPATCHED:
            meta[SEED_STATE_KEY] = "running"
        else:
            meta.pop(SEED_STATE_KEY, None)
        core["metadata"] = meta
        return core

    def create(
        self,
        *,
        task_id: str,
        saga_id: str,
        issue: int | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        compensations: Iterable[Compensation] = (),
    ) -> TaskSaga:
        """Create a planned, leaseable task saga. A taken task id or saga id is
        a ``LeaseConflictError`` (precisely ``AlreadyExistsError``)."""
        comps = _check_compensations(compensations, task_id)
        new = {
            "task_id": task_id,
            "saga_id": saga_id,
            "issue": issue,
            "branch": branch,
            "worktree": worktree,
            "compensations": [c.to_wire() for c in comps],
        }
        raw = call(self._native.create, json.dumps(new), self._now(), self._actor)
        return _saga_from_core(json.loads(raw))

    def acquire_lease(
        self,
        task_id: str,
        *,
        owner_id: str,
        expires_at: datetime,
        acquired_at: datetime,
    ) -> TaskSaga:
        """Acquire the task's lease and mark the saga running. ``LeaseConflictError``
        while anyone holds an unexpired lease, or if ``expires_at <= acquired_at``."""
        exp = require_aware(expires_at, "expires_at", task_id)
        acq = require_aware(acquired_at, "acquired_at", task_id)
        if exp <= acq:
            raise InvalidLeaseError(
                f"lease on task {task_id!r} must expire after its acquisition at "
                f"{acq.isoformat()}, got {exp.isoformat()}"
            )
        saga = self._require_mutable(task_id)
        if (
            TaskState(saga.state) is TaskState.RUNNING
            and saga.lease_owner is not None
            and saga.lease_expires_at is not None
            and saga.lease_expires_at > acq
        ):
            raise LeaseConflictError(
                f"task {task_id!r} is already leased by {saga.lease_owner!r} "
                f"until {saga.lease_expires_at.isoformat()}"
            )
        cmd = {"op": "acquire", "owner": owner_id, "expires_at": exp.isoformat()}
        return self._apply(task_id, cmd, acq.isoformat())

    def heartbeat(
        self,
        task_id: str,
        *,
        owner_id: str,
        heartbeat_at: datetime,
        expires_at: datetime,
    ) -> TaskSaga:
        """Extend the active lease before it expires. ``LeaseConflictError`` on a
        wrong owner, no lease, an expired lease, or an expiry that does not
        extend the current one; nothing changes then."""
        at = require_aware(heartbeat_at, "heartbeat_at", task_id)
        exp = require_aware(expires_at, "expires_at", task_id)
        saga = self._require_mutable(task_id)
        if saga.lease_owner is None or TaskState(saga.state) is not TaskState.RUNNING or saga.lease_token == 0:
            raise LeaseConflictError(
                f"cannot heartbeat task {task_id!r}: it has no active lease; expected one held by {owner_id!r}"
            )
        if saga.lease_owner != owner_id:
            raise LeaseConflictError(
                f"cannot heartbeat task {task_id!r}: it is leased by {saga.lease_owner!r}, not {owner_id!r}"
            )
        cmd = {
            "op": "heartbeat",
            "fence": Fence(owner_id, saga.lease_token).to_wire(),
            "expires_at": exp.isoformat(),
        }
        return self._apply(task_id, cmd, at.isoformat())

    def list_stale(self, *, now: datetime) -> tuple[TaskSaga, ...]:
        """Non-terminal sagas whose lease expired at or before ``now``
        (oldest expiry first)."""
        raw = call(self._native.list_stale, to_wire(now, "now"))
        return tuple(_saga_from_core(d) for d in json.loads(raw))

    def list_in_flight(self) -> tuple[TaskSaga, ...]:
        """Non-terminal sagas in insertion order."""
        return tuple(_saga_from_core(d) for d in json.loads(call(self._native.list_in_flight)))

    def mark_completed(self, task_id: str, *, reason: str | None = None) -> TaskSaga:
        """Mark a task completed."""
        return self._mark(task_id, TaskState.COMPLETED, reason=reason)

    def mark_failed(
        self,
        task_id: str,
        *,
        reason: str,
        compensation: Compensation | None = None,
    ) -> TaskSaga:
        """Mark a task failed. It must have a compensation record, existing or
        ``compensation`` (then appended); otherwise ``LeaseConflictError``."""
        return self._mark(task_id, TaskState.FAILED, reason=reason, compensation=compensation)

    def mark_compensated(self, task_id: str, *, reason: str | None = None) -> TaskSaga:
        """Mark a task compensated."""
        return self._mark(task_id, TaskState.COMPENSATED, reason=reason)

    def mark_quarantined(self, task_id: str, *, reason: str) -> TaskSaga:
        """Mark a task quarantined (a reason is required)."""
        return self._mark(task_id, TaskState.QUARANTINED, reason=reason)

    # -- transitions -------------------------------------------------------

    _OPS = {
        TaskState.COMPLETED: "complete",
        TaskState.FAILED: "fail",
        TaskState.COMPENSATED: "compensate",
        TaskState.QUARANTINED: "quarantine",
    }

    def _mark(
        self,
        task_id: str,
        state: TaskState,
        *,
        reason: str | None,
        compensation: Compensation | None = None,
    ) -> TaskSaga:
        extra = _check_compensations([compensation], task_id) if compensation is not None else []
        saga = self._require_mutable(task_id)
        if state is TaskState.FAILED and not saga.compensations and not extra:
            raise LeaseConflictError(
                f"task {task_id!r} cannot be failed without a compensation record; give one with the call"
            )
        now = self._now()
        if TaskState(saga.state) is TaskState.RUNNING and saga.lease_owner is not None and saga.lease_token:
            # Fenced by the lease read: refused if it was released, reclaimed
            # or re-acquired in between.
            cmd: dict[str, Any] = {
                "op": self._OPS[state],
                "reason": reason,
                "fence": Fence(saga.lease_owner, saga.lease_token).to_wire(),
            }
            if state is TaskState.FAILED:
                cmd["compensation"] = extra[0].to_wire() if extra else None
            return self._apply(task_id, cmd, now)
        # No lease to fence on: compare-and-set on the version read, so a lease
        # taken (or any other change made) in between wins.
        core = self._core(task_id)
        if core is None:
            raise NotFoundError(f"task {task_id!r} not found")
        core = dict(core)
        core["state"] = state.value
        core["terminal_reason"] = reason
        if extra:
            core["compensations"] = [*core.get("compensations", []), *[_pending(c, now) for c in extra]]
        meta = dict(core.get("metadata") or {})
        meta.pop(SEED_STATE_KEY, None)
        core["metadata"] = meta
        return self._put_core(core, saga.version or core["version"])

    # -- put helpers -------------------------------------------------------

    @staticmethod
    def _new_core(
        saga: TaskSaga,
        state: TaskState,
        comps: list[Compensation],
        now: str,
        expires: datetime | None,
        beat: datetime | None,
    ) -> dict[str, Any]:
        owner = saga.lease_owner
        acquired: datetime | None = None
        if expires is not None:
            if saga.lease_acquired_at is not None:
                acquired = require_aware(saga.lease_acquired_at, "lease_acquired_at", saga.task_id)
            elif beat is not None and beat < expires:
                acquired = beat
            else:
                acquired = expires - _ONE_MICRO
        leased = owner is not None
        return {
            "task_id": saga.task_id,
            "saga_id": saga.saga_id,
            "state": state.value,
            "queue": "default",
            "priority": 0,
            "issue": saga.issue,
            "branch": saga.branch,
            "worktree": saga.worktree,
            "metadata": {},
            "compensations": [_pending(c, now) for c in comps],
            "notes": [],
            "lease_owner": owner,
            "lease_token": max(saga.lease_token, 1) if leased else saga.lease_token,
            "lease_acquired_at": None if acquired is None else acquired.isoformat(),
            "lease_expires_at": None if expires is None else expires.isoformat(),
            "last_heartbeat_at": None if beat is None else beat.isoformat(),
            "attempts": max(saga.attempts, 1) if leased else saga.attempts,
            "terminal_reason": saga.terminal_reason,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }

    @staticmethod
    def _merge_compensations(
        stored: list[dict[str, Any]], comps: list[Compensation], now: str
    ) -> list[dict[str, Any]]:
        out = []
        for i, c in enumerate(comps):
            if i < len(stored) and (stored[i]["kind"], stored[i]["target"], stored[i]["reason"]) == (
                c.kind,
                c.target,
                c.reason,
            ):
                out.append(stored[i])  # keep its status and detail
            else:
                out.append(_pending(c, now))
        return out

    @staticmethod
    def _merge_lease(
        core: dict[str, Any],
        stored: dict[str, Any],
        owner: str | None,
        expires: datetime | None,
        beat: datetime | None,
    ) -> None:
        # Unchanged values keep the stored text; a changed one is sent as
        # given, and the engine refuses it (a lease is changed only by the
        # lease operations).
        core["lease_owner"] = owner
        for key, value in (("lease_expires_at", expires), ("last_heartbeat_at", beat)):
            old = opt_from_wire(stored.get(key))
            core[key] = stored.get(key) if old == value else (None if value is None else value.isoformat())


def _pending(c: Compensation, now: str) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "target": c.target,
        "reason": c.reason,
        "status": "pending",
        "detail": None,
        "updated_at": now,
    }


class SqliteTaskSagaStore(TaskSagaStoreBase):
    """SQLite-backed durable task saga store (the seed's class, on Leasehold's engine).

    ``path`` is a file path (parent folders are created) or ``":memory:"``,
    which gives the in-memory engine: the SQLite backend requires WAL, which
    an in-memory database cannot do.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        actor: str = "python",
        import_seed: bool = True,
    ) -> None:
        self.path = Path(path)
        #: What opening imported from a seed table in the same file (or ``None``).
        self.seed_import: SeedImportReport | None = None
        seed_rows = False
        if str(path) == ":memory:":
            native = _native.NativeStore.memory()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            seed_rows = import_seed and has_seed_table(self.path)
            native = call(_native.NativeStore.sqlite, str(self.path))
        super().__init__(native, clock=clock, actor=actor)
        if seed_rows:
            # A file written by the seed's store: bring its rows in (once;
            # rows already present are left alone), so it keeps its tasks.
            self.seed_import = import_seed_database(self.path, self.leasehold, at=self._clock())
            if self.seed_import.rejected:
                warnings.warn(
                    f"{len(self.seed_import.rejected)} seed row(s) in {self.path} could not be imported: "
                    + "; ".join(f"{tid}: {why}" for tid, why in self.seed_import.rejected[:5]),
                    stacklevel=2,
                )


class FakeTaskSagaStore(TaskSagaStoreBase):
    """In-memory task saga store: the engine's executable model."""

    def __init__(self, *, clock: Clock | None = None, actor: str = "python") -> None:
        super().__init__(_native.NativeStore.memory(), clock=clock, actor=actor)
