"""The richer API (``leasehold.Store``) on both engines: fencing tokens, claim,
release, reclaim, history, annotate, compensation results, compare-and-set,
and SPEC error codes as exception classes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import leasehold
from conftest import T0
from leasehold import (
    Compensation,
    CompensationStatus,
    Fence,
    HistoryKind,
    InvalidInputError,
    LeaseConflictError,
    NotFoundError,
    Store,
    TaskState,
    TerminalTaskMutationError,
    VersionConflictError,
)


@pytest.fixture(params=["memory", "sqlite"])
def rich(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return Store.memory(clock=lambda: T0)
    return Store.sqlite(tmp_path / "deep" / "rich.db", clock=lambda: T0)


def m(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def test_lease_lifecycle_tokens_history(rich: Store) -> None:
    rich.create("t1", "s1", compensations=[Compensation("delete-branch", "b", "cleanup")], at=T0)
    assert rich.dispatch("t1", at=m(1)).state is TaskState.DISPATCHED
    a = rich.acquire_lease("t1", owner="a", expires_at=m(10), at=m(2))
    assert a.state is TaskState.RUNNING and a.lease_token == 1 and a.attempts == 1
    assert a.fence == Fence("a", 1) and a.lease_acquired_at == m(2)
    hb = rich.heartbeat("t1", fence=a.fence, expires_at=m(20), at=m(5))  # type: ignore[arg-type]
    assert hb.lease_expires_at == m(20) and hb.last_heartbeat_at == m(5)
    rel = rich.release("t1", fence=a.fence, at=m(6))  # type: ignore[arg-type]
    assert rel.state is TaskState.DISPATCHED and rel.lease_owner is None and rel.lease_token == 1
    b = rich.acquire_lease("t1", owner="b", expires_at=m(30), at=m(7))
    assert b.lease_token == 2 and b.attempts == 2
    with pytest.raises(LeaseConflictError):
        rich.complete("t1", reason="late", fence=a.fence, at=m(8))  # old fence
    done = rich.complete("t1", reason="ok", fence=b.fence, at=m(9))
    assert done.state is TaskState.COMPLETED and done.terminal_reason == "ok"
    assert done.lease_owner == "b"  # kept for the record
    kinds = [h.kind for h in rich.history("t1")]
    assert kinds == [
        HistoryKind.CREATED, HistoryKind.DISPATCHED, HistoryKind.LEASED,
        HistoryKind.RELEASED, HistoryKind.LEASED, HistoryKind.COMPLETED,
    ]  # heartbeats are not history entries
    last = rich.history("t1")[-1]
    assert last.actor == "b" and last.lease_token == 2 and last.from_state is TaskState.RUNNING


def test_claim_priority_then_creation_order(rich: Store) -> None:
    rich.create("low", "s-low", queue="q", priority=0, at=T0)
    rich.create("high", "s-high", queue="q", priority=5, at=T0)
    rich.create("low2", "s-low2", queue="q", priority=0, at=T0)
    rich.create("elsewhere", "s-else", queue="other", priority=9, at=T0)
    got = rich.claim("w", queues=["q"], ttl=timedelta(minutes=5), limit=2, at=T0)
    assert [t.task_id for t in got] == ["high", "low"]
    assert all(t.lease_expires_at == m(5) and t.lease_owner == "w" for t in got)
    assert [t.task_id for t in rich.claim("w2", queues="q", ttl=60, at=T0)] == ["low2"]
    assert rich.claim("w3", queues=["q"], ttl=60, at=T0) == []
    assert rich.claim("w3", ttl=60, at=T0) == []  # default queue is empty
    # Expired leases are claimable again.
    again = rich.claim("w4", queues=["q"], ttl=60, limit=10, at=m(6))
    assert sorted(t.task_id for t in again) == ["high", "low", "low2"]
    assert {t.task_id: t.lease_token for t in again}["high"] == 2


def test_reclaim_dispatches_then_quarantines_after_max_attempts(rich: Store) -> None:
    rich.create("t", "s", at=T0)
    rich.acquire_lease("t", owner="a", expires_at=m(1), at=T0)
    assert rich.list_stale(now=m(1))[0].task_id == "t"
    back = rich.reclaim(now=m(2), max_attempts=2)
    assert [(t.task_id, t.state) for t in back] == [("t", TaskState.DISPATCHED)]
    assert back[0].lease_owner is None and back[0].lease_token == 1
    rich.acquire_lease("t", owner="b", expires_at=m(3), at=m(2))
    out = rich.reclaim(now=m(4), max_attempts=2)
    assert out[0].state is TaskState.QUARANTINED
    assert "2 attempts" in (out[0].terminal_reason or "") and "b" in (out[0].terminal_reason or "")
    assert rich.reclaim(now=m(5), max_attempts=2) == []
    assert [h.kind for h in rich.history("t")][-1] is HistoryKind.QUARANTINED


def test_fail_compensate_quarantine_and_audit(rich: Store) -> None:
    rich.create("f", "sf", at=T0)
    with pytest.raises(LeaseConflictError, match="compensation"):
        rich.fail("f", reason="boom", at=m(1))
    failed = rich.fail("f", reason="boom", compensation=Compensation("remove-worktree", "/w", "left over"), at=m(1))
    assert failed.state is TaskState.FAILED and failed.compensations[0].status is CompensationStatus.PENDING
    rec = rich.record_compensation("f", 0, status=CompensationStatus.APPLIED, detail="removed", at=m(2))
    assert rec.compensations[0].status is CompensationStatus.APPLIED and rec.compensations[0].updated_at == m(2)
    with pytest.raises(InvalidInputError, match="out of range"):
        rich.record_compensation("f", 3, status="failed", at=m(2))
    with pytest.raises(InvalidInputError):
        rich.record_compensation("f", 0, status="bogus", at=m(2))
    noted = rich.annotate("f", author="op", note="looked at it", at=m(3))
    assert noted.notes[-1].author == "op" and noted.notes[-1].at == m(3)
    rich.create("q", "sq", at=T0)
    with pytest.raises(InvalidInputError):
        rich.quarantine("q", reason="  ", at=m(1))
    assert rich.quarantine("q", reason="manual", at=m(1)).state is TaskState.QUARANTINED
    rich.create("c", "sc", at=T0)
    assert rich.compensate("c", at=m(1)).state is TaskState.COMPENSATED
    with pytest.raises(TerminalTaskMutationError):
        rich.dispatch("c", at=m(2))
    counts = rich.counts()
    assert counts[TaskState.FAILED] == 1 and counts[TaskState.QUARANTINED] == 1
    assert counts[TaskState.COMPENSATED] == 1 and counts[TaskState.PLANNED] == 0
    assert set(counts) == set(TaskState)


def test_put_compare_and_set(rich: Store) -> None:
    t = rich.create("p", "sp", branch="a", at=T0)
    v2 = rich.put(replace(t, branch="b"), expected_version=t.version, at=m(1))
    assert v2.branch == "b" and v2.version == t.version + 1
    with pytest.raises(VersionConflictError) as info:
        rich.put(replace(t, branch="c"), expected_version=t.version, at=m(2))
    assert isinstance(info.value, LeaseConflictError) and info.value.code == "version_conflict"
    assert rich.require("p").branch == "b"
    with pytest.raises(VersionConflictError):
        rich.put(replace(t, task_id="new-one", saga_id="s-new"), expected_version=5, at=m(2))
    ins = rich.put(replace(t, task_id="new-one", saga_id="s-new"), expected_version=0, at=m(2))
    assert ins.version == 1 and [h.kind for h in rich.history("new-one")] == [HistoryKind.IMPORTED]


def test_list_filters_and_pages(rich: Store) -> None:
    for i in range(5):
        rich.create(f"t{i}", f"s{i}", queue="a" if i % 2 else "b", at=T0)
    rich.acquire_lease("t1", owner="w", expires_at=m(1), at=T0)
    p1 = rich.list(limit=2)
    assert [t.task_id for t in p1.tasks] == ["t0", "t1"] and p1.next_cursor
    p2 = rich.list(limit=2, cursor=p1.next_cursor)
    assert [t.task_id for t in p2.tasks] == ["t2", "t3"]
    assert [t.task_id for t in rich.list(queue="a").tasks] == ["t1", "t3"]
    assert [t.task_id for t in rich.list(states=["running"]).tasks] == ["t1"]
    assert [t.task_id for t in rich.list(owner="w").tasks] == ["t1"]
    assert [t.task_id for t in rich.list(stale_at=m(1)).tasks] == ["t1"]
    assert [t.task_id for t in rich.list_in_flight()] == [f"t{i}" for i in range(5)]
    with pytest.raises(InvalidInputError):
        rich.list(cursor="not-a-cursor")


def test_errors_are_typed_and_change_nothing(rich: Store) -> None:
    rich.create("e", "se", at=T0)
    before = rich.require("e")
    with pytest.raises(NotFoundError) as nf:
        rich.dispatch("missing", at=T0)
    assert isinstance(nf.value, KeyError) and nf.value.code == "not_found" and "missing" in str(nf.value)
    with pytest.raises(NotFoundError):
        rich.history("missing")
    assert rich.get("missing") is None
    with pytest.raises(InvalidInputError, match="task_id"):
        rich.create("has space", "s-x", at=T0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        rich.acquire_lease("e", owner="w", expires_at=datetime(2026, 6, 3, 11), at=T0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        rich.dispatch("e", at=datetime(2026, 6, 3, 11))
    with pytest.raises(InvalidInputError, match="ttl"):
        rich.claim("w", ttl=0, at=T0)
    with pytest.raises(InvalidInputError, match="limit"):
        rich.claim("w", ttl=10, limit=0, at=T0)
    with pytest.raises(InvalidInputError, match="Fence"):
        rich.release("e", fence=("w", 1), at=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="metadata"):
        rich.create("meta", "s-meta", metadata={"k": "x" * 70_000}, at=T0)
    assert rich.require("e") == before
    assert rich.get("meta") is None
    for code in ("not_found", "already_exists", "lease_conflict", "terminal", "version_conflict",
                 "invalid_input", "unauthorized", "forbidden", "unavailable", "internal"):
        err = leasehold.errors.error_from_code(code, "m")
        assert err.code == code and isinstance(err, leasehold.LeaseholdError)
    assert leasehold.errors.error_from_code("weird", "m").code == "internal"


def test_sqlite_survives_reopen_and_is_shared_between_handles(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one = Store.sqlite(path)
    two = Store.sqlite(path)
    one.create("x", "sx", at=T0)
    got = two.acquire_lease("x", owner="w", expires_at=m(5), at=T0)
    assert one.require("x") == got
    del one, two
    assert Store.sqlite(path).require("x") == got


@pytest.mark.parametrize(
    "bad",
    [
        lambda s: s.get(123),
        lambda s: s.history(None),
        lambda s: s.dispatch(b"bytes", at=T0),
        lambda s: s.claim("w", ttl=10, limit=-1, at=T0),
        lambda s: s.claim("w", ttl=10**15, at=T0),
        lambda s: s.reclaim(now=T0, max_attempts=-3),
        lambda s: s.list(limit=-1),
        lambda s: s.create("t-bad", "s-bad", issue="seven", at=T0),  # type: ignore[arg-type]
        lambda s: s.create("t-bad", "s-bad", compensations=["not a compensation"], at=T0),  # type: ignore[list-item]
        lambda s: s.acquire_lease("t-ok", owner="", expires_at=T0 + timedelta(minutes=1), at=T0),
        lambda s: s.list(states=["sleeping"]),
    ],
)
def test_bad_input_is_invalid_input_never_a_crash(rich: Store, bad) -> None:  # type: ignore[no-untyped-def]
    rich.create("t-ok", "s-ok", at=T0)
    before = rich.require("t-ok")
    with pytest.raises((InvalidInputError, ValueError)) as info:
        bad(rich)
    if isinstance(info.value, leasehold.LeaseholdError):
        assert info.value.code == "invalid_input"
    assert rich.require("t-ok") == before
    assert rich.get("t-bad") is None


def test_seed_store_bad_input(tmp_path: Path) -> None:
    s = leasehold.SqliteTaskSagaStore(tmp_path / "x.db")
    with pytest.raises(InvalidInputError):
        s.get(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        s.create(task_id="bad id", saga_id="s")
    with pytest.raises(InvalidInputError):
        s.put("not a saga")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        s.create(task_id="t", saga_id="s", compensations=[("k", "t", "r")])  # type: ignore[list-item]
    assert s.list_in_flight() == ()
