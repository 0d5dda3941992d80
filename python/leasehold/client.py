"""HTTP client for ``leasehold serve`` (``/v1``), sync and async, with a worker helper.

``Client(url, token)`` speaks JSON over HTTP with the standard library only
(``urllib``); no third-party dependency. ``AsyncClient`` offers the same
methods as coroutines by running the sync client in a worker thread
(``asyncio.to_thread``): simple and dependency-free, at the cost of one thread
per call in flight; fine for a worker's handful of calls per lease.

The server decides time: leases are asked for with a ``ttl`` (seconds or a
``timedelta``) and expire by the server's clock, never the worker's.

Errors arrive as RFC 9457 problem documents with a ``code`` member and are
raised as the matching :class:`~leasehold.LeaseholdError` subclass. A server
that cannot be reached raises :class:`~leasehold.UnavailableError` (retryable).

The worker helper::

    with client.lease(queue="default", ttl=30) as lease:
        do_work(lease.task)
        lease.check()          # raises LeaseLost once the lease is gone

claims one task, heartbeats in a background thread every ``ttl/3``, completes
the task on normal exit, and on an exception fails it with the exception
recorded (given a ``compensation``) and re-raises.
"""

from __future__ import annotations

import builtins

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from ._time import seconds
from .errors import (
    ForbiddenError,
    InvalidInputError,
    LeaseConflictError,
    LeaseholdError,
    NotFoundError,
    TerminalTaskMutationError,
    UnavailableError,
    error_from_code,
)
from .types import Compensation, CompensationStatus, Fence, HistoryEntry, Page, Task, TaskState

__all__ = ["AsyncClient", "AsyncLease", "Client", "Lease", "LeaseLost", "NoTaskAvailable"]


class LeaseLost(LeaseConflictError):
    """The worker's lease is gone (expired and taken over, released, reclaimed,
    or the task was ended by someone else). Stop working on the task."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        #: The error that revealed the loss, if any.
        self.cause = cause


class NoTaskAvailable(LeaseholdError):
    """``client.lease(...)`` found nothing to claim within its ``wait``."""

    code = "not_found"
    http_status = 404


def _ms(ttl: float | timedelta) -> int:
    d = seconds(ttl, "ttl")
    return max(1, round(d.total_seconds() * 1000))


def _path_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise InvalidInputError(f"task_id must be a non-empty str, got {task_id!r}")
    return urllib.parse.quote(task_id, safe="")


def _comp(c: Compensation | None) -> dict[str, Any] | None:
    return None if c is None else {"kind": c.kind, "target": c.target, "reason": c.reason}


def _fence_body(fence: Fence | None) -> dict[str, Any]:
    if fence is None:
        return {}
    if not isinstance(fence, Fence):
        raise InvalidInputError(f"fence must be a leasehold.Fence(owner, token), got {fence!r}")
    return {"owner": fence.owner, "token": fence.token}


class Client:
    """Synchronous client for a Leasehold server.

    ``url`` is the server's base URL (e.g. ``http://127.0.0.1:7878``);
    ``token`` the bearer token (``None`` for a server without tokens).
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"server url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- transport ---------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, query: Sequence[tuple[str, str]] = ()) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise self._problem(e, method, path) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UnavailableError(f"{method} {path}: cannot reach {self.url}: {reason}") from None
        return json.loads(raw) if raw else None

    @staticmethod
    def _problem(e: urllib.error.HTTPError, method: str, path: str) -> LeaseholdError:
        try:
            doc = json.loads(e.read() or b"{}")
        except (ValueError, OSError):
            doc = {}
        code = doc.get("code") if isinstance(doc, dict) else None
        detail = doc.get("detail") if isinstance(doc, dict) else None
        if not code:
            code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 422: "invalid_input",
                    503: "unavailable"}.get(e.code, "internal")
        return error_from_code(code, detail or f"{method} {path}: HTTP {e.code}")

    def _task(self, method: str, path: str, body: Any = None) -> Task:
        return Task.from_wire(self._request(method, path, body))

    def _tasks(self, method: str, path: str, body: Any = None, query: Sequence[tuple[str, str]] = ()) -> list[Task]:
        return [Task.from_wire(t) for t in self._request(method, path, body, query)]

    # -- operations --------------------------------------------------------

    def health(self) -> bool:
        """Whether ``/healthz`` answers."""
        try:
            self._request("GET", "/healthz")
            return True
        except LeaseholdError:
            return False

    def create(
        self,
        task_id: str,
        saga_id: str,
        *,
        queue: str | None = None,
        priority: int | None = None,
        issue: int | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        metadata: dict[str, Any] | None = None,
        compensations: Iterable[Compensation] = (),
    ) -> Task:
        """Insert a new ``planned`` task (``AlreadyExistsError`` if taken)."""
        body = {"task_id": task_id, "saga_id": saga_id, "queue": queue, "priority": priority, "issue": issue,
                "branch": branch, "worktree": worktree, "metadata": metadata,
                "compensations": [_comp(c) for c in compensations]}
        return self._task("POST", "/v1/tasks", {k: v for k, v in body.items() if v is not None})

    def get(self, task_id: str) -> Task | None:
        """One task, or ``None``."""
        try:
            return self._task("GET", f"/v1/tasks/{_path_id(task_id)}")
        except NotFoundError:
            return None

    def require(self, task_id: str) -> Task:
        """One task, or ``NotFoundError``."""
        return self._task("GET", f"/v1/tasks/{_path_id(task_id)}")

    def put(self, task: Task, *, expected_version: int | None = None) -> Task:
        """Upsert a whole task; compare-and-set when ``expected_version`` is given."""
        body = task.to_wire()
        for k in ("created_at", "updated_at"):
            body.pop(k, None)
        body["version"] = expected_version
        return self._task("PUT", f"/v1/tasks/{_path_id(task.task_id)}", body)

    def dispatch(self, task_id: str) -> Task:
        """``planned`` → ``dispatched``."""
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/dispatch")

    def acquire_lease(self, task_id: str, *, ttl: float | timedelta, owner: str | None = None) -> Task:
        """Lease the task for ``ttl`` (by the server's clock). ``owner`` defaults
        to the token's name."""
        body: dict[str, Any] = {"ttl_ms": _ms(ttl)}
        if owner is not None:
            body["owner"] = owner
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/lease", body)

    def claim(
        self, *, queues: Sequence[str] | str = (), ttl: float | timedelta = 30.0, limit: int = 1, owner: str | None = None
    ) -> list[Task]:
        """Atomically lease up to ``limit`` claimable tasks (empty when none)."""
        if isinstance(queues, str):
            queues = [queues]
        body: dict[str, Any] = {"queues": list(queues), "ttl_ms": _ms(ttl), "limit": limit}
        if owner is not None:
            body["owner"] = owner
        return self._tasks("POST", "/v1/claim", body)

    def heartbeat(self, task_id: str, *, fence: Fence, ttl: float | timedelta) -> Task:
        """Extend the lease held under ``fence`` to ``ttl`` from the server's now."""
        body = {**_fence_body(fence), "ttl_ms": _ms(ttl)}
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/heartbeat", body)

    def release(self, task_id: str, *, fence: Fence) -> Task:
        """Give the lease back: → ``dispatched``."""
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/release", _fence_body(fence))

    def complete(self, task_id: str, *, reason: str | None = None, fence: Fence | None = None) -> Task:
        """→ ``completed`` (workers must pass their fence)."""
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/complete", {"reason": reason, **_fence_body(fence)})

    def compensate(self, task_id: str, *, reason: str | None = None, fence: Fence | None = None) -> Task:
        """→ ``compensated``."""
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/compensate", {"reason": reason, **_fence_body(fence)})

    def fail(
        self, task_id: str, *, reason: str, compensation: Compensation | None = None, fence: Fence | None = None
    ) -> Task:
        """→ ``failed``, appending ``compensation`` if given."""
        body = {"reason": reason, "compensation": _comp(compensation), **_fence_body(fence)}
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/fail", body)

    def quarantine(self, task_id: str, *, reason: str, fence: Fence | None = None) -> Task:
        """→ ``quarantined``."""
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/quarantine", {"reason": reason, **_fence_body(fence)})

    def annotate(self, task_id: str, *, note: str, author: str | None = None) -> Task:
        """Append a note (allowed on terminal tasks)."""
        body: dict[str, Any] = {"note": note}
        if author is not None:
            body["author"] = author
        return self._task("POST", f"/v1/tasks/{_path_id(task_id)}/notes", body)

    def record_compensation(
        self, task_id: str, index: int, *, status: CompensationStatus | str, detail: str | None = None
    ) -> Task:
        """Set the outcome of compensation ``index``."""
        try:
            st = CompensationStatus(status).value
        except ValueError:
            raise InvalidInputError(
                f"compensation status for task {task_id!r} must be pending, applied or failed, got {status!r}"
            ) from None
        path = f"/v1/tasks/{_path_id(task_id)}/compensations/{int(index)}"
        return self._task("POST", path, {"status": st, "detail": detail})

    def history(self, task_id: str) -> list[HistoryEntry]:
        """Every change to the task, oldest first."""
        return [HistoryEntry.from_wire(h) for h in self._request("GET", f"/v1/tasks/{_path_id(task_id)}/history")]

    def list(
        self,
        *,
        states: Iterable[TaskState | str] = (),
        queue: str | None = None,
        owner: str | None = None,
        stale: bool = False,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """One page of tasks in creation order."""
        q: builtins.list[tuple[str, str]] = []
        st = [TaskState(s).value for s in states]
        if st:
            q.append(("state", ",".join(st)))
        for key, value in (("queue", queue), ("owner", owner), ("cursor", cursor)):
            if value is not None:
                q.append((key, value))
        if stale:
            q.append(("stale", "true"))
        if limit is not None:
            q.append(("limit", str(limit)))
        return Page.from_wire(self._request("GET", "/v1/tasks", query=q))

    def list_in_flight(self) -> builtins.list[Task]:
        """Every non-terminal task in creation order (paged through ``list``)."""
        out: builtins.list[Task] = []
        cursor = None
        while True:
            page = self.list(states=(TaskState.PLANNED, TaskState.DISPATCHED, TaskState.RUNNING), cursor=cursor, limit=1000)
            out.extend(page.tasks)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def list_stale(self) -> builtins.list[Task]:
        """Tasks stale at the server's now, oldest expiry first."""
        return self._tasks("GET", "/v1/stale")

    def reclaim(self, *, max_attempts: int | None = None) -> builtins.list[Task]:
        """Reclaim every stale task now; returns the changed tasks."""
        body = {} if max_attempts is None else {"max_attempts": max_attempts}
        return self._tasks("POST", "/v1/reclaim", body)

    def counts(self) -> dict[TaskState, int]:
        """Tasks per state."""
        return {TaskState(k): v for k, v in self._request("GET", "/v1/counts").items()}

    # -- worker helper -----------------------------------------------------

    def lease(
        self,
        queue: str | Sequence[str] = "default",
        ttl: float | timedelta = 30.0,
        *,
        owner: str | None = None,
        compensation: Compensation | None = None,
        wait: float = 0.0,
        poll_interval: float = 0.5,
        heartbeat_interval: float | None = None,
    ) -> Lease:
        """A context manager that claims one task from ``queue`` for ``ttl``.

        Inside: a background thread heartbeats every ``heartbeat_interval``
        (default ``ttl/3``). On normal exit the task is completed; on an
        exception it is failed with the exception as reason (appending
        ``compensation`` if given; released instead when the task has no
        compensation at all) and the exception propagates. ``wait`` seconds
        are spent polling for a task before :class:`NoTaskAvailable`.
        """
        return Lease(self, queue, ttl, owner=owner, compensation=compensation, wait=wait,
                     poll_interval=poll_interval, heartbeat_interval=heartbeat_interval)


# Answers meaning "this lease is gone". `forbidden` is among them: a server
# refuses a worker's write to a task that another worker now holds.
_LOST = (LeaseConflictError, TerminalTaskMutationError, NotFoundError, ForbiddenError)


class Lease:
    """One claimed task and its background heartbeat (see :meth:`Client.lease`)."""

    def __init__(
        self,
        client: Client,
        queue: str | Sequence[str],
        ttl: float | timedelta,
        *,
        owner: str | None,
        compensation: Compensation | None,
        wait: float,
        poll_interval: float,
        heartbeat_interval: float | None,
    ) -> None:
        self.client = client
        self.queues = [queue] if isinstance(queue, str) else list(queue)
        self.ttl = seconds(ttl, "ttl")
        self.owner = owner
        self.compensation = compensation
        self.wait = wait
        self.poll_interval = poll_interval
        self.interval = heartbeat_interval if heartbeat_interval is not None else self.ttl.total_seconds() / 3
        self._task: Task | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: LeaseLost | None = None
        self._ended = False
        #: Heartbeats sent successfully so far.
        self.heartbeats = 0
        #: The last transient heartbeat error (e.g. server unavailable), if any.
        self.last_error: BaseException | None = None

    @property
    def task(self) -> Task:
        """The task as of the last successful call."""
        if self._task is None:
            raise InvalidInputError("the lease is not held: use it inside `with client.lease(...) as lease:`")
        return self._task

    @property
    def fence(self) -> Fence:
        """The fence (owner, token) of this lease."""
        f = self.task.fence
        if f is None:
            raise LeaseLost(f"task {self.task.task_id!r} has no lease any more")
        return f

    @property
    def lost(self) -> bool:
        """Whether the lease is known to be gone."""
        return self._lost is not None

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease is known to be gone."""
        if self._lost is not None:
            raise self._lost

    def heartbeat(self) -> Task:
        """Extend the lease now (the background thread calls this)."""
        self.check()
        task_id, fence = self.task.task_id, self.fence
        try:
            t = self.client.heartbeat(task_id, fence=fence, ttl=self.ttl)
        except _LOST as e:
            with self._lock:
                self._lost = LeaseLost(f"lease on task {task_id!r} (token {fence.token}) is gone: {e}", e)
            raise self._lost from e
        with self._lock:
            self._task = t
            self.heartbeats += 1
        return t

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.heartbeat()
            except LeaseLost:
                return
            except LeaseholdError as e:  # transient (unavailable...): try again next tick
                self.last_error = e

    def _claim(self) -> Task:
        import time

        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            got = self.client.claim(queues=self.queues, ttl=self.ttl, limit=1, owner=self.owner)
            if got:
                return got[0]
            if time.monotonic() >= deadline:
                raise NoTaskAvailable(f"no claimable task in queues {self.queues} (waited {self.wait}s)")
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def __enter__(self) -> Lease:
        self._task = self._claim()
        self._thread = threading.Thread(target=self._beat, name=f"leasehold-heartbeat-{self._task.task_id}", daemon=True)
        self._thread.start()
        return self

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def complete(self, reason: str | None = None) -> Task:
        """End the task as completed now (``__exit__`` then does nothing)."""
        self._stop_beating()
        self.check()
        try:
            t = self.client.complete(self.task.task_id, reason=reason, fence=self.fence)
        except _LOST as e:
            self._lost = LeaseLost(f"cannot complete task {self.task.task_id!r}: {e}", e)
            raise self._lost from e
        self._task, self._ended = t, True
        return t

    def fail(self, reason: str, compensation: Compensation | None = None) -> Task:
        """End the task as failed now (``__exit__`` then does nothing)."""
        self._stop_beating()
        self.check()
        t = self.client.fail(self.task.task_id, reason=reason, compensation=compensation or self.compensation, fence=self.fence)
        self._task, self._ended = t, True
        return t

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop_beating()
        if self._ended or self._task is None:
            return
        if exc is None:
            self.complete()
            return
        if isinstance(exc, LeaseLost) or self._lost is not None:
            return  # the lease is gone: nothing to record, let the error propagate
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        task_id = self.task.task_id
        try:
            self.fail(reason)
        except LeaseConflictError as e:
            if "compensation" in str(e):
                # No cleanup record to fail with: give the task back instead.
                self.client.release(task_id, fence=self.fence)
                self._ended = True
            else:
                self._lost = LeaseLost(f"cannot fail task {task_id!r}: {e}", e)
        except (TerminalTaskMutationError, NotFoundError, ForbiddenError) as e:
            self._lost = LeaseLost(f"cannot fail task {task_id!r}: {e}", e)
        # The original exception propagates either way.


class AsyncClient:
    """The :class:`Client` API as coroutines (each call runs in a worker thread)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        #: The underlying sync client.
        self.sync = Client(url, token, timeout=timeout)

    async def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

    async def health(self) -> bool:
        """See :meth:`Client.health`."""
        return await self._run("health")  # type: ignore[no-any-return]

    async def create(self, task_id: str, saga_id: str, **kwargs: Any) -> Task:
        """See :meth:`Client.create`."""
        return await self._run("create", task_id, saga_id, **kwargs)  # type: ignore[no-any-return]

    async def get(self, task_id: str) -> Task | None:
        """See :meth:`Client.get`."""
        return await self._run("get", task_id)  # type: ignore[no-any-return]

    async def require(self, task_id: str) -> Task:
        """See :meth:`Client.require`."""
        return await self._run("require", task_id)  # type: ignore[no-any-return]

    async def put(self, task: Task, *, expected_version: int | None = None) -> Task:
        """See :meth:`Client.put`."""
        return await self._run("put", task, expected_version=expected_version)  # type: ignore[no-any-return]

    async def dispatch(self, task_id: str) -> Task:
        """See :meth:`Client.dispatch`."""
        return await self._run("dispatch", task_id)  # type: ignore[no-any-return]

    async def acquire_lease(self, task_id: str, *, ttl: float | timedelta, owner: str | None = None) -> Task:
        """See :meth:`Client.acquire_lease`."""
        return await self._run("acquire_lease", task_id, ttl=ttl, owner=owner)  # type: ignore[no-any-return]

    async def claim(self, **kwargs: Any) -> list[Task]:
        """See :meth:`Client.claim`."""
        return await self._run("claim", **kwargs)  # type: ignore[no-any-return]

    async def heartbeat(self, task_id: str, *, fence: Fence, ttl: float | timedelta) -> Task:
        """See :meth:`Client.heartbeat`."""
        return await self._run("heartbeat", task_id, fence=fence, ttl=ttl)  # type: ignore[no-any-return]

    async def release(self, task_id: str, *, fence: Fence) -> Task:
        """See :meth:`Client.release`."""
        return await self._run("release", task_id, fence=fence)  # type: ignore[no-any-return]

    async def complete(self, task_id: str, *, reason: str | None = None, fence: Fence | None = None) -> Task:
        """See :meth:`Client.complete`."""
        return await self._run("complete", task_id, reason=reason, fence=fence)  # type: ignore[no-any-return]

    async def compensate(self, task_id: str, *, reason: str | None = None, fence: Fence | None = None) -> Task:
        """See :meth:`Client.compensate`."""
        return await self._run("compensate", task_id, reason=reason, fence=fence)  # type: ignore[no-any-return]

    async def fail(
        self, task_id: str, *, reason: str, compensation: Compensation | None = None, fence: Fence | None = None
    ) -> Task:
        """See :meth:`Client.fail`."""
        return await self._run("fail", task_id, reason=reason, compensation=compensation, fence=fence)  # type: ignore[no-any-return]

    async def quarantine(self, task_id: str, *, reason: str, fence: Fence | None = None) -> Task:
        """See :meth:`Client.quarantine`."""
        return await self._run("quarantine", task_id, reason=reason, fence=fence)  # type: ignore[no-any-return]

    async def annotate(self, task_id: str, *, note: str, author: str | None = None) -> Task:
        """See :meth:`Client.annotate`."""
        return await self._run("annotate", task_id, note=note, author=author)  # type: ignore[no-any-return]

    async def record_compensation(
        self, task_id: str, index: int, *, status: CompensationStatus | str, detail: str | None = None
    ) -> Task:
        """See :meth:`Client.record_compensation`."""
        return await self._run("record_compensation", task_id, index, status=status, detail=detail)  # type: ignore[no-any-return]

    async def history(self, task_id: str) -> list[HistoryEntry]:
        """See :meth:`Client.history`."""
        return await self._run("history", task_id)  # type: ignore[no-any-return]

    async def list(self, **kwargs: Any) -> Page:
        """See :meth:`Client.list`."""
        return await self._run("list", **kwargs)  # type: ignore[no-any-return]

    async def list_in_flight(self) -> builtins.list[Task]:
        """See :meth:`Client.list_in_flight`."""
        return await self._run("list_in_flight")  # type: ignore[no-any-return]

    async def list_stale(self) -> builtins.list[Task]:
        """See :meth:`Client.list_stale`."""
        return await self._run("list_stale")  # type: ignore[no-any-return]

    async def reclaim(self, *, max_attempts: int | None = None) -> builtins.list[Task]:
        """See :meth:`Client.reclaim`."""
        return await self._run("reclaim", max_attempts=max_attempts)  # type: ignore[no-any-return]

    async def counts(self) -> dict[TaskState, int]:
        """See :meth:`Client.counts`."""
        return await self._run("counts")  # type: ignore[no-any-return]

    def lease(
        self,
        queue: str | Sequence[str] = "default",
        ttl: float | timedelta = 30.0,
        *,
        owner: str | None = None,
        compensation: Compensation | None = None,
        wait: float = 0.0,
        poll_interval: float = 0.5,
        heartbeat_interval: float | None = None,
    ) -> AsyncLease:
        """``async with client.lease(...) as lease:``: see :meth:`Client.lease`."""
        return AsyncLease(self.sync.lease(queue, ttl, owner=owner, compensation=compensation, wait=wait,
                                          poll_interval=poll_interval, heartbeat_interval=heartbeat_interval))


class AsyncLease:
    """Async context manager around :class:`Lease`; its heartbeat runs in a thread,
    so a busy event loop cannot starve it."""

    def __init__(self, lease: Lease) -> None:
        #: The underlying lease.
        self.lease = lease

    @property
    def task(self) -> Task:
        """The task as of the last successful call."""
        return self.lease.task

    @property
    def fence(self) -> Fence:
        """This lease's fence."""
        return self.lease.fence

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease is known to be gone."""
        self.lease.check()

    async def heartbeat(self) -> Task:
        """Extend the lease now."""
        return await asyncio.to_thread(self.lease.heartbeat)

    async def __aenter__(self) -> AsyncLease:
        await asyncio.to_thread(self.lease.__enter__)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.lease.__exit__, exc_type, exc, tb)
