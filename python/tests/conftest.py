"""Shared fixtures: a store harness parametrized over the in-memory engine and
SQLite, fixed instants (never the wall clock), and the seed's saga builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leasehold import (
    Compensation,
    FakeTaskSagaStore,
    SqliteTaskSagaStore,
    TaskSaga,
    TaskSagaStoreBase,
    TaskState,
)

#: The fixed instant every scenario starts from.
T0 = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    """The clock given to stores: writes without a time in the seed's signature
    (put, create, mark_*) happen at T0."""
    return T0


@dataclass
class Harness:
    """Opens the store under test; ``reopen`` gives a new handle on the same data."""

    kind: str
    path: Path
    _fake: FakeTaskSagaStore | None = field(default=None)

    def open(self) -> TaskSagaStoreBase:
        if self.kind == "sqlite":
            return SqliteTaskSagaStore(self.path, clock=fixed_clock)
        if self._fake is None:
            self._fake = FakeTaskSagaStore(clock=fixed_clock)
        return self._fake

    def reopen(self) -> TaskSagaStoreBase:
        # The in-memory model cannot be reopened; its "reopen" is the same
        # handle (the scenarios still check equality field for field).
        return self.open()

    def another(self) -> TaskSagaStoreBase:
        """A second, independent handle (for SQLite: a new connection)."""
        return self.open()


@pytest.fixture(params=["fake", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return Harness(kind=request.param, path=tmp_path / "nested" / "dir" / "tasks.db")


@pytest.fixture
def store(harness: Harness) -> TaskSagaStoreBase:
    return harness.open()


def make_saga(
    task_id: str,
    *,
    state: TaskState = TaskState.RUNNING,
    compensations: tuple[Compensation, ...] | None = None,
) -> TaskSaga:
    """The seed tests' saga: issue, branch, worktree and one compensation."""
    if compensations is None:
        compensations = (
            Compensation(kind="remove-worktree", target=f"/tmp/{task_id}", reason="cleanup after task terminal state"),
        )
    return TaskSaga(
        task_id=task_id,
        saga_id=f"saga-{task_id}",
        state=state,
        issue=165,
        branch="loop/165-feat",
        worktree=f"/tmp/{task_id}",
        compensations=compensations,
    )


SagaFactory = Callable[..., TaskSaga]
