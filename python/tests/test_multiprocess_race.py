"""Races between OS processes on one SQLite file: exactly one winner per task.

Each process opens its own store (its own connection), so the engine's
atomicity across processes (BEGIN IMMEDIATE + conditional write) is what is
tested, not a lock inside one Python process.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from pathlib import Path

from conftest import T0
from leasehold import SqliteTaskSagaStore, Store

import race_worker

PROCESSES = 8
ROUNDS = 40


def _spawn() -> mp.context.SpawnContext:
    # spawn, not fork: a forked child would inherit the parent's open SQLite
    # handles; each worker must open its own.
    return mp.get_context("spawn")


def test_processes_race_to_acquire_one_task_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "race" / "tasks.db"
    store = SqliteTaskSagaStore(path)
    for r in range(ROUNDS):
        store.create(task_id=f"task-race-{r}", saga_id=f"saga-race-{r}", issue=r, branch=None, worktree=None)
    ctx = _spawn()
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_worker.acquire_rounds, args=(str(path), w, ROUNDS, barrier, results))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    errors = [o for o in outcomes if o[2].startswith("error")]
    assert errors == []
    for r in range(ROUNDS):
        this = [o for o in outcomes if o[0] == r]
        winners = [w for (_, w, what) in this if what == "won"]
        assert len(this) == PROCESSES
        assert len(winners) == 1, (r, winners)
        saga = store.get(f"task-race-{r}")
        assert saga is not None and saga.lease_owner == f"worker-{winners[0]}"
        assert saga.lease_token == 1 and saga.attempts == 1
        assert saga.last_heartbeat_at == T0


def test_processes_claiming_one_queue_take_each_task_once(tmp_path: Path) -> None:
    path = tmp_path / "claim.db"
    store = Store.sqlite(path)
    n_tasks = 40
    for i in range(n_tasks):
        store.create(f"task-claim-{i}", f"saga-claim-{i}", queue="race", at=T0)
    ctx = _spawn()
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=race_worker.claim_all, args=(str(path), w, barrier, results)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(PROCESSES)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [o[2] for o in outcomes if o[2] is not None] == []
    claimed = Counter(tid for (_, ids, _) in outcomes for tid in ids)
    assert len(claimed) == n_tasks
    assert set(claimed.values()) == {1}
    for t in store.list(queue="race", limit=1000).tasks:
        assert t.lease_token == 1 and t.lease_owner is not None
