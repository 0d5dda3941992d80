"""Seeded random operation sequences through the seed-compatible API: the
in-memory model (``FakeTaskSagaStore``) and SQLite must agree step for step,
result for result and error class for error class. A failure names its seed
and step so it replays exactly."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import T0
from leasehold import (
    Compensation,
    FakeTaskSagaStore,
    LeaseholdError,
    SqliteTaskSagaStore,
    TaskSagaStoreBase,
    TaskState,
)

TASKS = [f"t-{i}" for i in range(8)]
OWNERS = ["w1", "w2", "w3"]
COMP = Compensation("remove-worktree", "/tmp/wt", "cleanup")
STEPS = 200


def _op(rng: random.Random, now: Any, model: TaskSagaStoreBase) -> tuple[str, dict[str, Any]]:
    """One random operation. It may look at the model (never at SQLite) to aim
    at interesting cases: the current owner, an expiry near the current one."""
    tid = rng.choice(TASKS)
    kind = rng.choices(
        ["create", "acquire", "heartbeat", "complete", "fail", "compensate", "quarantine",
         "put_branch", "put_state", "stale", "in_flight", "get"],
        weights=[8, 8, 10, 1, 1, 1, 1, 3, 2, 2, 1, 1],
    )[0]
    cur = model.get(tid)
    owner = rng.choice(OWNERS)
    exp = now + timedelta(minutes=rng.randint(-1, 12))
    if kind == "heartbeat" and cur is not None and cur.lease_expires_at is not None:
        if rng.random() < 0.7 and cur.lease_owner is not None:
            owner = cur.lease_owner
        exp = cur.lease_expires_at + timedelta(minutes=rng.randint(-1, 10))
    return kind, {
        "tid": tid,
        "owner": owner,
        "at": now,
        "exp": exp,
        "with_comp": rng.random() < 0.5,
        "branch": f"loop/{rng.randint(0, 3)}",
        "state": rng.choice(list(TaskState)),
    }


def _apply(store: TaskSagaStoreBase, kind: str, a: dict[str, Any]) -> Any:
    tid = a["tid"]
    if kind == "create":
        return store.create(task_id=tid, saga_id=f"saga-{tid}", issue=1, branch="b", worktree="/w",
                            compensations=(COMP,) if a["with_comp"] else ())
    if kind == "acquire":
        return store.acquire_lease(tid, owner_id=a["owner"], expires_at=a["exp"], acquired_at=a["at"])
    if kind == "heartbeat":
        return store.heartbeat(tid, owner_id=a["owner"], heartbeat_at=a["at"], expires_at=a["exp"])
    if kind == "complete":
        return store.mark_completed(tid, reason="done")
    if kind == "fail":
        return store.mark_failed(tid, reason="boom", compensation=COMP if a["with_comp"] else None)
    if kind == "compensate":
        return store.mark_compensated(tid, reason="undone")
    if kind == "quarantine":
        return store.mark_quarantined(tid, reason="manual")
    if kind in ("put_branch", "put_state"):
        cur = store.get(tid)
        if cur is None:
            return None
        change = {"branch": a["branch"]} if kind == "put_branch" else {"state": a["state"]}
        return store.put(replace(cur, **change))
    if kind == "stale":
        return store.list_stale(now=a["at"])
    if kind == "in_flight":
        return store.list_in_flight()
    return store.get(tid)


def _outcome(store: TaskSagaStoreBase, kind: str, a: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("ok", _apply(store, kind, a))
    except KeyError as e:  # NotFoundError is one too
        return ("KeyError", type(e).__name__)
    except LeaseholdError as e:
        return (type(e).__name__, e.code)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_model_and_sqlite_agree_step_for_step(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    clock = {"now": T0}
    model = FakeTaskSagaStore(clock=lambda: clock["now"])
    real = SqliteTaskSagaStore(tmp_path / "model.db", clock=lambda: clock["now"])
    ok = 0
    for step in range(STEPS):
        clock["now"] = clock["now"] + timedelta(minutes=rng.randint(0, 2))
        kind, args = _op(rng, clock["now"], model)
        want = _outcome(model, kind, args)
        got = _outcome(real, kind, args)
        assert got == want, f"seed {seed} step {step}: {kind} {args}: model {want!r} != sqlite {got!r}"
        ok += want[0] == "ok"
        for tid in TASKS:
            assert real.get(tid) == model.get(tid), f"seed {seed} step {step}: state of {tid} diverged"
    # Not vacuous: a good share of operations succeeded, and some were refused.
    assert ok > STEPS // 4, f"seed {seed}: only {ok} operations succeeded"
    assert ok < STEPS, f"seed {seed}: nothing was ever refused"
