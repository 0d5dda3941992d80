"""The seed scenarios (shared/SEED-SCENARIOS.md) through the seed-compatible
API, on both stores (``fake`` = the in-memory engine, ``sqlite``).

Times are fixed instants from T0; nothing reads the wall clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from conftest import T0, Harness, make_saga
from leasehold import (
    AlreadyExistsError,
    Compensation,
    Fence,
    InvalidInputError,
    LeaseConflictError,
    NotFoundError,
    TaskSaga,
    TaskSagaStoreBase,
    TaskState,
    TerminalTaskMutationError,
)

COMP = Compensation(kind="delete-branch", target="loop/168", reason="remove abandoned branch")


def create(store: TaskSagaStoreBase, task_id: str, *, compensations: tuple[Compensation, ...] = (COMP,)) -> TaskSaga:
    return store.create(
        task_id=task_id,
        saga_id=f"saga-{task_id}",
        issue=168,
        branch="loop/168-feat",
        worktree=f"/tmp/wt-{task_id}",
        compensations=compensations,
    )


def lease(store: TaskSagaStoreBase, task_id: str, owner: str, at: datetime, minutes: int = 10) -> TaskSaga:
    return store.acquire_lease(task_id, owner_id=owner, expires_at=at + timedelta(minutes=minutes), acquired_at=at)


# 1 ---------------------------------------------------------------------------


def test_s01_written_task_reads_back_equal_after_reopen(harness: Harness) -> None:
    store = harness.open()
    expected = make_saga("task-165-a")
    store.put(expected)
    create(store, "task-leased")
    leased = lease(store, "task-leased", "worker-a", T0)

    reopened = harness.reopen()
    assert reopened.get("task-165-a") == expected
    got = reopened.get("task-leased")
    assert got == leased
    assert got is not None and got.compensations == (COMP,)
    # Every seed field, one by one (equality could hide a field left out of ==).
    for name in (
        "task_id", "saga_id", "state", "issue", "branch", "worktree", "compensations",
        "lease_owner", "lease_expires_at", "last_heartbeat_at", "terminal_reason",
    ):
        assert getattr(got, name) == getattr(leased, name), name
    assert got.lease_expires_at == T0 + timedelta(minutes=10)


# 2 ---------------------------------------------------------------------------


def test_s02_missing_id_is_none_after_reopen(harness: Harness) -> None:
    harness.open().put(make_saga("task-existing"))
    reopened = harness.reopen()
    assert reopened.get("task-missing") is None
    assert reopened.get("task-existing") is not None


# 3 ---------------------------------------------------------------------------


def test_s03_list_in_flight_is_non_terminal_in_creation_order(store: TaskSagaStoreBase) -> None:
    running = make_saga("task-running", state=TaskState.RUNNING)
    planned = make_saga("task-planned", state=TaskState.PLANNED)
    completed = make_saga("task-completed", state=TaskState.COMPLETED)
    failed = make_saga("task-failed", state=TaskState.FAILED)
    for saga in (running, completed, planned, failed):
        store.put(saga)
    assert store.list_in_flight() == (running, planned)
    assert isinstance(store.list_in_flight(), tuple)


def test_s03_fake_and_sqlite_return_the_same_shape(tmp_path) -> None:
    from leasehold import FakeTaskSagaStore, SqliteTaskSagaStore

    real = SqliteTaskSagaStore(tmp_path / "tasks.db")
    fake = FakeTaskSagaStore()
    running = make_saga("task-running", state=TaskState.RUNNING)
    terminal = make_saga("task-terminal", state=TaskState.QUARANTINED)
    for s in (real, fake):
        s.put(running)
        s.put(terminal)
        create(s, "task-created")
        lease(s, "task-created", "worker-a", T0)
    assert real.list_in_flight() == fake.list_in_flight()
    assert len(real.list_in_flight()) == 2
    assert real.get("task-running") == fake.get("task-running")
    assert real.get("task-created") == fake.get("task-created")


# 4 ---------------------------------------------------------------------------


def test_s04_lease_race_read_then_other_acquires_then_conflict(harness: Harness) -> None:
    """Worker A reads the task, worker B acquires it, then A acquires: conflict.
    A subclass's ``_require_mutable`` is the seam where B slips in."""
    harness.open().put(make_saga("task-raced", state=TaskState.DISPATCHED))
    owner_b_time = T0 + timedelta(seconds=1)
    other = harness.another()
    base = type(other)

    class RacingStore(base):  # type: ignore[valid-type, misc]
        def _require_mutable(self, task_id: str) -> TaskSaga:
            stale = super()._require_mutable(task_id)
            other.acquire_lease(
                task_id, owner_id="worker-b", expires_at=owner_b_time + timedelta(minutes=30), acquired_at=owner_b_time
            )
            return stale

    racing = RacingStore.__new__(RacingStore)
    racing.__dict__.update(other.__dict__)  # same engine handle / file
    with pytest.raises(LeaseConflictError):
        racing.acquire_lease("task-raced", owner_id="worker-a", expires_at=T0 + timedelta(minutes=30), acquired_at=T0)
    persisted = harness.another().get("task-raced")
    assert persisted is not None
    assert persisted.lease_owner == "worker-b"
    assert persisted.last_heartbeat_at == owner_b_time


def test_s04_threads_race_to_acquire_exactly_one_winner(harness: Harness) -> None:
    import threading

    store = harness.open()
    rounds, workers = 50, 32
    for r in range(rounds):
        task_id = f"task-race-{r}"
        create(store, task_id)
        barrier = threading.Barrier(workers)
        wins: list[str] = []
        conflicts: list[str] = []
        others: list[BaseException] = []

        def work(i: int) -> None:
            barrier.wait()
            try:
                lease(store, task_id, f"worker-{i}", T0)
                wins.append(f"worker-{i}")
            except LeaseConflictError:
                conflicts.append(f"worker-{i}")
            except BaseException as e:  # noqa: BLE001 - counted, then asserted empty
                others.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert others == []
        assert len(wins) == 1, (r, wins)
        assert len(conflicts) == workers - 1
        got = store.get(task_id)
        assert got is not None and got.lease_owner == wins[0]
        assert got.lease_token == 1 and got.attempts == 1


# 5 ---------------------------------------------------------------------------


def test_s05_created_is_planned_then_running_after_acquire(store: TaskSagaStoreBase) -> None:
    created = create(store, "task-168-a")
    assert created.state is TaskState.PLANNED
    assert created.lease_owner is None
    assert created.lease_expires_at is None
    assert created.last_heartbeat_at is None
    leased = store.acquire_lease(
        "task-168-a", owner_id="worker-a", expires_at=T0 + timedelta(minutes=30), acquired_at=T0
    )
    assert leased.state is TaskState.RUNNING
    assert leased.lease_owner == "worker-a"
    assert leased.lease_expires_at == T0 + timedelta(minutes=30)
    assert leased.last_heartbeat_at == T0
    assert store.get("task-168-a") == leased


def test_s05_acquire_rejects_expiry_not_after_acquisition(store: TaskSagaStoreBase) -> None:
    create(store, "task-expiry")
    before = store.get("task-expiry")
    for delta in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(LeaseConflictError) as info:
            store.acquire_lease("task-expiry", owner_id="w", expires_at=T0 + delta, acquired_at=T0)
        assert isinstance(info.value, InvalidInputError)  # SPEC: invalid_input
        assert info.value.code == "invalid_input"
    assert store.get("task-expiry") == before


def test_s05_acquire_on_missing_task_is_keyerror(store: TaskSagaStoreBase) -> None:
    with pytest.raises(KeyError):
        lease(store, "task-ghost", "worker-a", T0)
    with pytest.raises(NotFoundError):
        store.mark_completed("task-ghost", reason="x")


# 6 ---------------------------------------------------------------------------


def test_s06_duplicate_create_is_rejected_and_first_unchanged(store: TaskSagaStoreBase) -> None:
    first = create(store, "task-dup")
    with pytest.raises(LeaseConflictError) as info:
        store.create(task_id="task-dup", saga_id="saga-other", issue=1, branch="b", worktree="w", compensations=())
    assert isinstance(info.value, AlreadyExistsError) and info.value.code == "already_exists"
    assert "task-dup" in str(info.value)
    with pytest.raises(AlreadyExistsError):
        store.create(task_id="task-other", saga_id="saga-task-dup", issue=1, branch="b", worktree="w", compensations=())
    assert store.get("task-dup") == first
    assert store.get("task-other") is None


# 7 ---------------------------------------------------------------------------


def test_s07_heartbeat_extends_lease(harness: Harness) -> None:
    store = harness.open()
    store.put(make_saga("task-hb", state=TaskState.DISPATCHED))
    lease(store, "task-hb", "worker-a", T0)
    beat = T0 + timedelta(minutes=5)
    extended = store.heartbeat("task-hb", owner_id="worker-a", heartbeat_at=beat, expires_at=beat + timedelta(minutes=20))
    assert extended.lease_expires_at == beat + timedelta(minutes=20)
    assert extended.last_heartbeat_at == beat
    persisted = harness.reopen().get("task-hb")
    assert persisted is not None
    assert persisted.lease_expires_at == beat + timedelta(minutes=20)
    assert persisted.last_heartbeat_at == beat


# 8 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["wrong_owner", "no_lease", "expired", "at_expiry", "not_extending", "shorter"],
)
def test_s08_adversarial_heartbeats_rejected_and_unchanged(store: TaskSagaStoreBase, case: str) -> None:
    create(store, "task-adv")
    if case != "no_lease":
        lease(store, "task-adv", "worker-a", T0)  # expires T0+10m
    before = store.get("task-adv")
    owner, at, exp = {
        "wrong_owner": ("worker-b", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30)),
        "no_lease": ("worker-a", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30)),
        "expired": ("worker-a", T0 + timedelta(minutes=15), T0 + timedelta(minutes=40)),
        "at_expiry": ("worker-a", T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)),
        "not_extending": ("worker-a", T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)),
        "shorter": ("worker-a", T0 + timedelta(minutes=5), T0 + timedelta(minutes=8)),
    }[case]
    with pytest.raises(LeaseConflictError):
        store.heartbeat("task-adv", owner_id=owner, heartbeat_at=at, expires_at=exp)
    after = store.get("task-adv")
    assert after == before
    assert after is not None and before is not None and after.version == before.version


def test_s08_stale_token_heartbeat_rejected(store: TaskSagaStoreBase) -> None:
    """The seed API has no token; the richer API on the same store does."""
    rich = store.leasehold
    create(store, "task-token")
    first = rich.acquire_lease("task-token", owner="worker-a", expires_at=T0 + timedelta(minutes=10), at=T0)
    rich.release("task-token", fence=first.fence, at=T0 + timedelta(minutes=1))  # type: ignore[arg-type]
    second = rich.acquire_lease(
        "task-token", owner="worker-a", expires_at=T0 + timedelta(minutes=20), at=T0 + timedelta(minutes=2)
    )
    assert second.lease_token == first.lease_token + 1
    before = rich.get("task-token")
    with pytest.raises(LeaseConflictError, match="stale"):
        rich.heartbeat(
            "task-token", fence=Fence("worker-a", first.lease_token),
            expires_at=T0 + timedelta(minutes=30), at=T0 + timedelta(minutes=3),
        )
    assert rich.get("task-token") == before


# 9 ---------------------------------------------------------------------------


def test_s09_stale_copy_write_back_keeps_active_lease(store: TaskSagaStoreBase) -> None:
    create(store, "task-stale-copy")
    stale_copy = store.get("task-stale-copy")
    assert stale_copy is not None
    leased = lease(store, "task-stale-copy", "worker-a", T0, minutes=30)
    with pytest.raises(LeaseConflictError):
        store.put(replace(stale_copy, branch="loop/overwritten"))
    with pytest.raises(LeaseConflictError):
        store.put(replace(stale_copy, state=TaskState.DISPATCHED))
    assert store.get("task-stale-copy") == leased


def test_s09_put_keeping_the_lease_may_edit_fields(store: TaskSagaStoreBase) -> None:
    create(store, "task-edit")
    leased = lease(store, "task-edit", "worker-a", T0, minutes=30)
    edited = store.put(replace(leased, branch="loop/renamed"))
    assert edited.branch == "loop/renamed"
    assert edited.lease_owner == "worker-a"
    assert store.get("task-edit") == edited


# 10 --------------------------------------------------------------------------


def test_s10_late_heartbeat_after_reclaim_conflicts(store: TaskSagaStoreBase) -> None:
    create(store, "task-late")
    lease(store, "task-late", "worker-a", T0, minutes=10)
    # A's lease expired; B takes the task over.
    b_at = T0 + timedelta(minutes=11)
    lease(store, "task-late", "worker-b", b_at, minutes=10)
    with pytest.raises(LeaseConflictError):
        store.heartbeat("task-late", owner_id="worker-a", heartbeat_at=T0 + timedelta(minutes=12), expires_at=T0 + timedelta(minutes=40))
    got = store.get("task-late")
    assert got is not None and got.lease_owner == "worker-b" and got.last_heartbeat_at == b_at


def test_s10_late_heartbeat_after_reaper_reclaim_conflicts(store: TaskSagaStoreBase) -> None:
    rich = store.leasehold
    create(store, "task-reaped")
    a = rich.acquire_lease("task-reaped", owner="worker-a", expires_at=T0 + timedelta(minutes=10), at=T0)
    reclaimed = rich.reclaim(now=T0 + timedelta(minutes=11), max_attempts=3)
    assert [t.task_id for t in reclaimed] == ["task-reaped"]
    b = rich.claim("worker-b", ttl=600, at=T0 + timedelta(minutes=12))
    assert [t.task_id for t in b] == ["task-reaped"] and b[0].lease_token == a.lease_token + 1
    with pytest.raises(LeaseConflictError):
        rich.heartbeat("task-reaped", fence=a.fence, expires_at=T0 + timedelta(minutes=40), at=T0 + timedelta(minutes=13))  # type: ignore[arg-type]
    assert store.get("task-reaped").lease_owner == "worker-b"  # type: ignore[union-attr]


# 11 --------------------------------------------------------------------------


def test_s11_list_stale_exactly_expired_non_terminal(store: TaskSagaStoreBase) -> None:
    for tid in ("task-stale", "task-fresh", "task-terminal", "task-unleased", "task-boundary"):
        create(store, tid)
    store.acquire_lease("task-stale", owner_id="w1", expires_at=T0 - timedelta(seconds=1), acquired_at=T0 - timedelta(minutes=10))
    store.acquire_lease("task-fresh", owner_id="w2", expires_at=T0 + timedelta(minutes=5), acquired_at=T0 - timedelta(minutes=10))
    store.acquire_lease("task-terminal", owner_id="w3", expires_at=T0 - timedelta(seconds=1), acquired_at=T0 - timedelta(minutes=10))
    store.acquire_lease("task-boundary", owner_id="w4", expires_at=T0, acquired_at=T0 - timedelta(minutes=10))
    store.mark_completed("task-terminal", reason="done")
    stale = store.list_stale(now=T0)
    # Oldest expiry first; expiring exactly at `now` counts as stale.
    assert [s.task_id for s in stale] == ["task-stale", "task-boundary"]
    assert stale[0] == store.get("task-stale")


# 12 --------------------------------------------------------------------------


def test_s12_completed_task_cannot_be_leased_again(store: TaskSagaStoreBase) -> None:
    store.put(make_saga("task-terminal", state=TaskState.COMPLETED))
    with pytest.raises(TerminalTaskMutationError) as info:
        store.acquire_lease("task-terminal", owner_id="worker-a", expires_at=T0 + timedelta(minutes=30), acquired_at=T0)
    assert "task-terminal" in str(info.value)
    assert info.value.code == "terminal"


# 13 --------------------------------------------------------------------------

MARKERS = [
    ("mark_completed", TaskState.COMPLETED, {"reason": "done"}),
    ("mark_compensated", TaskState.COMPENSATED, {"reason": "worktree removed"}),
    ("mark_quarantined", TaskState.QUARANTINED, {"reason": "manual review"}),
    ("mark_failed", TaskState.FAILED, {"reason": "worker crashed"}),
]


@pytest.mark.parametrize(("marker", "state", "kwargs"), MARKERS, ids=[m[0] for m in MARKERS])
@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
def test_s13_terminal_markers_store_state_and_reason_then_reject_everything(
    harness: Harness, marker: str, state: TaskState, kwargs: dict[str, str], leased: bool
) -> None:
    store = harness.open()
    tid = f"task-{marker}"
    create(store, tid)
    if leased:
        lease(store, tid, "worker-a", T0, minutes=30)
    marked = getattr(store, marker)(tid, **kwargs)
    assert marked.state is state
    assert marked.terminal_reason == kwargs["reason"]
    assert marked.is_terminal
    assert harness.reopen().get(tid) == marked
    kinds = [h.kind.value for h in store.leasehold.history(tid)]
    assert kinds[-1] in (state.value, "updated")
    frozen = store.get(tid)

    rejected = [
        lambda: lease(store, tid, "worker-b", T0 + timedelta(hours=1)),
        lambda: store.heartbeat(tid, owner_id="worker-a", heartbeat_at=T0 + timedelta(minutes=1), expires_at=T0 + timedelta(hours=2)),
        lambda: store.mark_completed(tid, reason="again"),
        lambda: store.mark_failed(tid, reason="again", compensation=COMP),
        lambda: store.mark_compensated(tid, reason="again"),
        lambda: store.mark_quarantined(tid, reason="again"),
        lambda: store.put(replace(marked, state=TaskState.PLANNED, lease_owner=None, lease_expires_at=None, last_heartbeat_at=None)),
    ]
    for attempt in rejected:
        with pytest.raises(TerminalTaskMutationError, match=tid):
            attempt()
    rich = store.leasehold
    t = rich.require(tid)
    with pytest.raises(TerminalTaskMutationError):
        rich.release(tid, fence=Fence("worker-a", max(t.lease_token, 1)), at=T0 + timedelta(minutes=1))
    with pytest.raises(TerminalTaskMutationError):
        rich.dispatch(tid, at=T0 + timedelta(minutes=1))
    assert store.get(tid) == frozen


# 14 --------------------------------------------------------------------------


def test_s14_terminal_task_only_audit_metadata_changes(store: TaskSagaStoreBase) -> None:
    completed = make_saga("task-terminal-put", state=TaskState.COMPLETED)
    store.put(completed)
    for change in (
        {"state": TaskState.RUNNING, "branch": "loop/mutated"},
        {"branch": "loop/mutated"},
        {"issue": 999},
        {"compensations": ()},
        {"state": TaskState.FAILED},
    ):
        with pytest.raises(TerminalTaskMutationError, match="task-terminal-put"):
            store.put(replace(completed, **change))
    audited = store.put(replace(completed, terminal_reason="operator recorded cleanup note"))
    assert audited.terminal_reason == "operator recorded cleanup note"
    assert store.get("task-terminal-put") == audited

    rich = store.leasehold
    noted = rich.annotate("task-terminal-put", author="operator", note="checked by hand", at=T0)
    assert [n.note for n in noted.notes] == ["checked by hand"]
    recorded = rich.record_compensation("task-terminal-put", 0, status="applied", detail="worktree gone", at=T0)
    assert recorded.compensations[0].status.value == "applied"
    assert recorded.compensations[0].detail == "worktree gone"
    assert store.get("task-terminal-put") == audited  # seed fields untouched
    assert [h.kind.value for h in rich.history("task-terminal-put")][-2:] == ["annotated", "compensation_recorded"]


# 15 --------------------------------------------------------------------------


def test_s15_write_racing_a_terminal_transition_loses(harness: Harness) -> None:
    store = harness.open()
    create(store, "task-race-terminal")
    stale_copy = store.get("task-race-terminal")
    assert stale_copy is not None
    store.mark_quarantined("task-race-terminal", reason="manual review")
    with pytest.raises(TerminalTaskMutationError):
        store.put(replace(stale_copy, branch="loop/late-write"))
    with pytest.raises(TerminalTaskMutationError):
        store.put(stale_copy)
    got = harness.reopen().get("task-race-terminal")
    assert got is not None
    assert got.state is TaskState.QUARANTINED and got.terminal_reason == "manual review"
    assert got.branch == "loop/168-feat"


def test_s15_marker_racing_a_terminal_transition_loses(harness: Harness) -> None:
    """A subclass reads the task; another handle completes it in between;
    the subclass's ``mark_failed`` must not overwrite the completion."""
    store = harness.open()
    create(store, "task-marker-race")
    other = harness.another()

    class Racing(type(store)):  # type: ignore[misc]
        def _require_mutable(self, task_id: str) -> TaskSaga:
            read = super()._require_mutable(task_id)
            other.mark_completed(task_id, reason="won the race")
            return read

    racing = Racing.__new__(Racing)
    racing.__dict__.update(store.__dict__)
    with pytest.raises(TerminalTaskMutationError):
        racing.mark_failed("task-marker-race", reason="lost the race")
    got = store.get("task-marker-race")
    assert got is not None and got.state is TaskState.COMPLETED and got.terminal_reason == "won the race"


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
def test_s15_marker_refuses_a_lease_change_made_in_between(harness: Harness, leased: bool) -> None:
    """Read through ``_require_mutable``; someone takes (or re-takes) the lease
    in between; the marker's write is refused and the new lease survives."""
    store = harness.open()
    create(store, "task-lease-between")
    if leased:
        first = store.leasehold.acquire_lease("task-lease-between", owner="worker-a", expires_at=T0 + timedelta(minutes=10), at=T0)
    other = harness.another()

    class Racing(type(store)):  # type: ignore[misc]
        def _require_mutable(self, task_id: str) -> TaskSaga:
            read = super()._require_mutable(task_id)
            if leased:
                other.leasehold.release(task_id, fence=first.fence, at=T0 + timedelta(minutes=1))
            lease(other, task_id, "worker-b", T0 + timedelta(minutes=2), minutes=30)
            return read

    racing = Racing.__new__(Racing)
    racing.__dict__.update(store.__dict__)
    with pytest.raises(LeaseConflictError):
        racing.mark_completed("task-lease-between", reason="stale decision")
    got = store.get("task-lease-between")
    assert got is not None and got.state is TaskState.RUNNING and got.lease_owner == "worker-b"


def test_s15_heartbeat_refuses_a_reacquired_lease(harness: Harness) -> None:
    """Same owner, new lease in between: the old lease's heartbeat (fenced by the
    token read) must not extend the new one."""
    store = harness.open()
    create(store, "task-hb-between")
    first = store.leasehold.acquire_lease("task-hb-between", owner="worker-a", expires_at=T0 + timedelta(minutes=10), at=T0)
    other = harness.another()

    class Racing(type(store)):  # type: ignore[misc]
        def _require_mutable(self, task_id: str) -> TaskSaga:
            read = super()._require_mutable(task_id)
            other.leasehold.release(task_id, fence=first.fence, at=T0 + timedelta(minutes=1))
            other.leasehold.acquire_lease(task_id, owner="worker-a", expires_at=T0 + timedelta(minutes=20), at=T0 + timedelta(minutes=2))
            return read

    racing = Racing.__new__(Racing)
    racing.__dict__.update(store.__dict__)
    with pytest.raises(LeaseConflictError):
        racing.heartbeat("task-hb-between", owner_id="worker-a", heartbeat_at=T0 + timedelta(minutes=3), expires_at=T0 + timedelta(minutes=40))
    got = store.leasehold.require("task-hb-between")
    assert got.lease_token == first.lease_token + 1
    assert got.lease_expires_at == T0 + timedelta(minutes=20)


# 16 --------------------------------------------------------------------------


def test_s16_failure_requires_or_preserves_compensation(store: TaskSagaStoreBase) -> None:
    with_existing = make_saga("task-with-comp", state=TaskState.RUNNING)
    without = make_saga("task-without-comp", state=TaskState.RUNNING, compensations=())
    store.put(with_existing)
    store.put(without)

    failed = store.mark_failed("task-with-comp", reason="worker crashed")
    assert failed.compensations == with_existing.compensations

    before = store.get("task-without-comp")
    with pytest.raises(LeaseConflictError, match="compensation"):
        store.mark_failed("task-without-comp", reason="worker crashed")
    assert store.get("task-without-comp") == before
    assert not store.get("task-without-comp").is_terminal  # type: ignore[union-attr]

    comp = Compensation(kind="remove-worktree", target="/tmp/task-without-comp", reason="cleanup failed worker")
    failed_new = store.mark_failed("task-without-comp", reason="worker crashed", compensation=comp)
    assert failed_new.compensations == (comp,)
    assert failed_new.state is TaskState.FAILED


def test_s16_failing_a_leased_task_via_the_engine_needs_compensation(store: TaskSagaStoreBase) -> None:
    create(store, "task-leased-nocomp", compensations=())
    lease(store, "task-leased-nocomp", "worker-a", T0, minutes=30)
    with pytest.raises(LeaseConflictError, match="compensation"):
        store.mark_failed("task-leased-nocomp", reason="crashed")
    failed = store.mark_failed("task-leased-nocomp", reason="crashed", compensation=COMP)
    assert failed.compensations == (COMP,)


def test_s16_writing_failed_without_compensation_is_rejected(store: TaskSagaStoreBase) -> None:
    with pytest.raises(LeaseConflictError, match="compensation"):
        store.put(make_saga("task-failed-direct", state=TaskState.FAILED, compensations=()))
    assert store.get("task-failed-direct") is None
    create(store, "task-failed-update", compensations=())
    planned = store.get("task-failed-update")
    with pytest.raises(LeaseConflictError, match="compensation"):
        store.put(replace(planned, state=TaskState.FAILED))  # type: ignore[type-var]
    assert store.get("task-failed-update") == planned


# 17 --------------------------------------------------------------------------


def test_s17_reopen_preserves_lease_and_compensations(harness: Harness) -> None:
    store = harness.open()
    created = create(store, "task-168-reopen")
    store.acquire_lease(created.task_id, owner_id="worker-a", expires_at=T0 + timedelta(minutes=30), acquired_at=T0)
    beat = T0 + timedelta(minutes=1)
    store.heartbeat(created.task_id, owner_id="worker-a", heartbeat_at=beat, expires_at=T0 + timedelta(minutes=45))
    reopened = harness.reopen()
    persisted = reopened.get(created.task_id)
    assert persisted is not None
    assert persisted.lease_owner == "worker-a"
    assert persisted.lease_token == 1
    assert persisted.lease_expires_at == T0 + timedelta(minutes=45)
    assert persisted.last_heartbeat_at == beat
    assert persisted.compensations == (COMP,)
    # The reopened store still enforces the lease.
    with pytest.raises(LeaseConflictError):
        lease(reopened, created.task_id, "worker-b", T0 + timedelta(minutes=2))


# 18 --------------------------------------------------------------------------


def test_s18_offsets_normalise_to_utc_and_naive_is_rejected(store: TaskSagaStoreBase) -> None:
    plus2 = timezone(timedelta(hours=2))
    create(store, "task-tz")
    leased = store.acquire_lease(
        "task-tz",
        owner_id="worker-a",
        expires_at=datetime(2026, 6, 3, 10, 30, tzinfo=plus2),  # 08:30Z
        acquired_at=datetime(2026, 6, 3, 10, 0, tzinfo=plus2),  # 08:00Z
    )
    assert leased.last_heartbeat_at == datetime(2026, 6, 3, 8, 0, tzinfo=UTC)
    assert leased.lease_expires_at is not None
    assert leased.lease_expires_at.utcoffset() == timedelta(0)
    assert leased.lease_expires_at.hour == 8 and leased.lease_expires_at.minute == 30
    # Compared in UTC: 08:20Z is before the 08:30Z expiry, so still leased.
    with pytest.raises(LeaseConflictError):
        store.acquire_lease("task-tz", owner_id="worker-b", expires_at=T0, acquired_at=datetime(2026, 6, 3, 8, 20, tzinfo=UTC))
    stale = store.list_stale(now=datetime(2026, 6, 3, 10, 30, tzinfo=plus2))
    assert [s.task_id for s in stale] == ["task-tz"]

    before = store.get("task-tz")
    naive = datetime(2026, 6, 3, 10, 0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.heartbeat("task-tz", owner_id="worker-a", heartbeat_at=naive, expires_at=T0 + timedelta(hours=1))
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.acquire_lease("task-tz", owner_id="worker-a", expires_at=T0, acquired_at=naive)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.list_stale(now=naive)
    assert store.get("task-tz") == before


def test_s15_marker_refuses_any_change_made_in_between(harness: Harness) -> None:
    """Read without a lease; someone edits the task in between; the marker's
    compare-and-set on the version read refuses instead of deciding on a copy
    that is no longer current."""
    store = harness.open()
    create(store, "task-edit-between")
    other = harness.another()

    class Racing(type(store)):  # type: ignore[misc]
        def _require_mutable(self, task_id: str) -> TaskSaga:
            read = super()._require_mutable(task_id)
            current = other.get(task_id)
            other.put(replace(current, branch="loop/edited-in-between"))  # type: ignore[type-var]
            return read

    racing = Racing.__new__(Racing)
    racing.__dict__.update(store.__dict__)
    with pytest.raises(LeaseConflictError) as info:
        racing.mark_completed("task-edit-between", reason="decided on a stale read")
    assert info.value.code == "version_conflict"
    got = store.get("task-edit-between")
    assert got is not None and got.state is TaskState.PLANNED and got.branch == "loop/edited-in-between"


def test_both_stores_satisfy_the_seed_protocol(store: TaskSagaStoreBase) -> None:
    from leasehold import TaskSagaStore

    assert isinstance(store, TaskSagaStore)
    typed: TaskSagaStore = store
    assert typed.get("nothing") is None


def test_put_never_loses_a_note_written_in_between(harness: Harness) -> None:
    """Fields the seed does not know (notes, compensation results) must
    survive a seed ``put`` that raced them."""
    store = harness.open()
    create(store, "task-notes")
    other = harness.another()
    real_core = store._core  # noqa: SLF001 - instrumenting the read
    calls = {"n": 0}

    def racing_core(task_id: str):  # type: ignore[no-untyped-def]
        got = real_core(task_id)
        if calls["n"] == 0:  # after put's first read, someone annotates
            other.leasehold.annotate(task_id, author="op", note="written in between", at=T0)
            other.leasehold.record_compensation(task_id, 0, status="applied", at=T0)
        calls["n"] += 1
        return got

    saga = store.get("task-notes")
    store._core = racing_core  # type: ignore[method-assign]
    put = store.put(replace(saga, branch="loop/after"))  # type: ignore[type-var]
    assert put.branch == "loop/after"
    t = store.leasehold.require("task-notes")
    assert [n.note for n in t.notes] == ["written in between"]
    assert t.compensations[0].status.value == "applied"
    assert calls["n"] >= 2  # the merge was redone on the new version
