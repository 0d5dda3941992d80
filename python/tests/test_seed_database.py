"""A file written by the seed's own store keeps its tasks when opened with
``SqliteTaskSagaStore`` (the drop-in promise), imported once."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import T0, fixed_clock
from leasehold import (
    Compensation,
    CompensationStatus,
    HistoryKind,
    LeaseConflictError,
    SqliteTaskSagaStore,
    TaskState,
)

SCHEMA = """
CREATE TABLE task_sagas (
    task_id TEXT PRIMARY KEY, saga_id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    issue INTEGER, branch TEXT, worktree TEXT, compensations_json TEXT NOT NULL,
    lease_owner TEXT, lease_expires_at TEXT, last_heartbeat_at TEXT, terminal_reason TEXT
)
"""
COMP = {"kind": "remove-worktree", "target": "/tmp/wt", "reason": "cleanup"}


def write_seed_db(path: Path) -> None:
    rows = [
        ("t-planned", "s-planned", "planned", 1, "b1", "/w1", json.dumps([COMP]), None, None, None, None),
        ("t-leased", "s-leased", "running", 2, "b2", "/w2", json.dumps([COMP]),
         "worker-a", (T0 + timedelta(minutes=30)).isoformat(), T0.isoformat(), None),
        ("t-naive", "s-naive", "running", 3, None, None, "[]",
         "worker-b", "2026-06-03T10:30:00", "2026-06-03T10:05:00", None),
        ("t-running-unleased", "s-ru", "running", 4, None, None, json.dumps([COMP]), None, None, None, None),
        ("t-compensated", "s-comp", "compensated", 5, None, None, json.dumps([COMP]), None, None, None, "undone"),
        ("t-bad-failed", "s-bad", "failed", 6, None, None, "[]", None, None, None, "no cleanup"),
    ]
    with sqlite3.connect(path) as c:
        c.executescript(SCHEMA)
        c.executemany("INSERT INTO task_sagas VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)


def test_seed_file_keeps_its_tasks_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "seed.db"
    write_seed_db(db)
    with pytest.warns(UserWarning, match="t-bad-failed"):
        store = SqliteTaskSagaStore(db, clock=fixed_clock)
    report = store.seed_import
    assert report is not None
    assert report.imported == ["t-planned", "t-leased", "t-naive", "t-running-unleased", "t-compensated"]
    assert [tid for tid, _ in report.rejected] == ["t-bad-failed"]
    assert "compensation" in report.rejected[0][1]

    assert [s.task_id for s in store.list_in_flight()] == ["t-planned", "t-leased", "t-naive", "t-running-unleased"]
    leased = store.get("t-leased")
    assert leased is not None and leased.state is TaskState.RUNNING and leased.lease_owner == "worker-a"
    assert leased.lease_expires_at == T0 + timedelta(minutes=30) and leased.last_heartbeat_at == T0
    assert leased.lease_token == 1 and leased.attempts == 1
    assert leased.compensations == (Compensation(**COMP),)
    naive = store.get("t-naive")
    assert naive is not None and naive.lease_expires_at == datetime(2026, 6, 3, 10, 30, tzinfo=UTC)
    ru = store.get("t-running-unleased")
    assert ru is not None and ru.state is TaskState.RUNNING and ru.lease_owner is None
    comp = store.leasehold.require("t-compensated")
    assert comp.state is TaskState.COMPENSATED and comp.compensations[0].status is CompensationStatus.APPLIED
    assert [h.kind for h in store.leasehold.history("t-planned")] == [HistoryKind.IMPORTED]

    # The imported lease is enforced.
    with pytest.raises(LeaseConflictError):
        store.acquire_lease("t-leased", owner_id="worker-z", expires_at=T0 + timedelta(hours=1), acquired_at=T0)
    store.heartbeat("t-leased", owner_id="worker-a", heartbeat_at=T0 + timedelta(minutes=1), expires_at=T0 + timedelta(hours=1))
    store.acquire_lease("t-running-unleased", owner_id="worker-c", expires_at=T0 + timedelta(hours=1), acquired_at=T0)

    # Reopening imports nothing twice and keeps what changed since.
    with pytest.warns(UserWarning):
        again = SqliteTaskSagaStore(db, clock=fixed_clock)
    assert again.seed_import is not None and again.seed_import.imported == []
    assert len(again.seed_import.already_present) == 5
    assert again.get("t-leased").lease_expires_at == T0 + timedelta(hours=1)  # type: ignore[union-attr]
    assert len(again.leasehold.history("t-planned")) == 1


def test_import_can_be_turned_off(tmp_path: Path) -> None:
    db = tmp_path / "seed.db"
    write_seed_db(db)
    store = SqliteTaskSagaStore(db, import_seed=False)
    assert store.seed_import is None and store.get("t-planned") is None


def test_plain_leasehold_file_has_no_seed_import(tmp_path: Path) -> None:
    store = SqliteTaskSagaStore(tmp_path / "fresh.db")
    assert store.seed_import is None
    assert SqliteTaskSagaStore(tmp_path / "fresh.db").seed_import is None
