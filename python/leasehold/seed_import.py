"""Bring the rows of a database written by the seed's store (table
``task_sagas``) into a Leasehold store.

``SqliteTaskSagaStore(path)`` calls this on open when ``path`` already holds a
seed table, so an existing deployment's file keeps its tasks. The mapping is
the CLI's ``leasehold import`` (see ``docs/cli.md``), with one addition for
Python callers: a ``running`` row without a lease (which the seed allowed) is
kept as the compatibility store keeps it, ``dispatched`` with a marker that
shows it back as ``RUNNING``.

- Rows are read in ``rowid`` (insertion) order, which becomes creation order.
- Each row is inserted whole with ``put(task, expected_version=0)``: validated
  like any insert, with an ``imported`` history entry in the same transaction.
- A task id already in the store is left untouched, so importing twice
  changes nothing.
- Compensations get status ``applied`` on a ``compensated`` task, else
  ``pending``; a lease gets token 1 and one attempt, and its acquisition time
  is the last heartbeat (or the expiry minus 1 µs).
- Timestamps without an offset are read as UTC (the seed wrote UTC).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ._time import now_utc
from .errors import LeaseholdError, VersionConflictError
from .store import Store, call
from .types import TaskState

__all__ = ["SEED_TABLE", "SeedImportReport", "has_seed_table", "import_seed_database"]

#: The seed's table.
SEED_TABLE = "task_sagas"
_SEED_STATE_KEY = "leasehold.seed_state"
_ONE_MICRO = timedelta(microseconds=1)


@dataclass
class SeedImportReport:
    """What an import did."""

    imported: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    #: (task_id, reason) for rows that could not be represented.
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def has_seed_table(path: str | Path) -> bool:
    """Whether the SQLite file at ``path`` exists and has a ``task_sagas`` table."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        with _connect_ro(p) as c:
            row = c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (SEED_TABLE,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def _ts(text: Any) -> datetime | None:
    if text is None or text == "":
        return None
    dt = datetime.fromisoformat(str(text))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _row_to_task(row: sqlite3.Row, now: str) -> dict[str, Any]:
    cols = row.keys()

    def col(name: str) -> Any:
        return row[name] if name in cols else None

    task_id = str(row["task_id"])
    state = TaskState(str(row["state"]).lower())
    comps_raw = json.loads(col("compensations_json") or "[]")
    if not isinstance(comps_raw, list):
        raise ValueError("compensations_json is not a JSON list")
    status = "applied" if state is TaskState.COMPENSATED else "pending"
    comps = [
        {"kind": c["kind"], "target": c["target"], "reason": c.get("reason", ""), "status": status,
         "detail": None, "updated_at": now}
        for c in comps_raw
    ]
    owner = col("lease_owner")
    expires = _ts(col("lease_expires_at"))
    beat = _ts(col("last_heartbeat_at"))
    acquired = None
    if expires is not None:
        acquired = beat if beat is not None and beat < expires else expires - _ONE_MICRO
    metadata: dict[str, Any] = {}
    if state is TaskState.RUNNING and owner is None and expires is None:
        state = TaskState.DISPATCHED
        metadata[_SEED_STATE_KEY] = "running"
    return {
        "task_id": task_id,
        "saga_id": str(row["saga_id"]),
        "state": state.value,
        "queue": "default",
        "priority": 0,
        "issue": col("issue"),
        "branch": col("branch"),
        "worktree": col("worktree"),
        "metadata": metadata,
        "compensations": comps,
        "notes": [],
        "lease_owner": owner,
        "lease_token": 1 if owner is not None else 0,
        "lease_acquired_at": None if acquired is None else acquired.isoformat(),
        "lease_expires_at": None if expires is None else expires.isoformat(),
        "last_heartbeat_at": None if beat is None else beat.isoformat(),
        "attempts": 1 if owner is not None else 0,
        "terminal_reason": col("terminal_reason"),
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def import_seed_database(seed_path: str | Path, store: Store, *, at: datetime | None = None) -> SeedImportReport:
    """Import every row of the seed table at ``seed_path`` into ``store``."""
    report = SeedImportReport()
    when = (at or now_utc()).astimezone(UTC).isoformat()
    with _connect_ro(Path(seed_path)) as c:
        c.row_factory = sqlite3.Row
        rows = c.execute(f"SELECT * FROM {SEED_TABLE} ORDER BY rowid ASC").fetchall()  # noqa: S608 - constant
    native = store._native  # noqa: SLF001 - same package
    for row in rows:
        task_id = str(row["task_id"])
        if store.get(task_id) is not None:
            report.already_present.append(task_id)
            continue
        try:
            task = _row_to_task(row, when)
            call(native.put, json.dumps(task), 0, when, "seed-import")
        except VersionConflictError:
            report.already_present.append(task_id)  # inserted concurrently
        except (LeaseholdError, ValueError, KeyError, TypeError) as e:
            report.rejected.append((task_id, str(e)))
        else:
            report.imported.append(task_id)
    return report
