"""Child-process side of the multi-process races (imported by spawned workers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)


def acquire_rounds(path: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """Each round: wait for every process, then race to lease ``task-race-<round>``."""
    from leasehold import LeaseConflictError, SqliteTaskSagaStore

    store = SqliteTaskSagaStore(path)
    for r in range(rounds):
        barrier.wait()
        try:
            store.acquire_lease(
                f"task-race-{r}",
                owner_id=f"worker-{worker}",
                expires_at=T0 + timedelta(minutes=10),
                acquired_at=T0,
            )
            results.put((r, worker, "won"))
        except LeaseConflictError:
            results.put((r, worker, "conflict"))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            results.put((r, worker, f"error: {type(e).__name__}: {e}"))


def claim_all(path: str, worker: int, barrier: Any, results: Any) -> None:
    """Claim one task at a time from the queue until none is left."""
    from leasehold import Store

    store = Store.sqlite(path)
    barrier.wait()
    claimed = []
    try:
        while True:
            got = store.claim(f"worker-{worker}", queues=["race"], ttl=600, limit=1, at=T0)
            if not got:
                break
            claimed.extend(t.task_id for t in got)
        results.put((worker, claimed, None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((worker, claimed, f"{type(e).__name__}: {e}"))
