"""The HTTP client and the worker helper against a real ``leasehold serve``.

The server binary comes from ``$LEASEHOLD_BIN`` (set by ``.ci/python.sh``)
or ``target/debug/leasehold`` in the repository. It runs on a free loopback
port with a fresh SQLite file. The server owns the clock here, so leases use
generous TTLs; waits are for observed events (a heartbeat counted, a loss
detected), each bounded, never a sleep for time to pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasehold import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    ForbiddenError,
    Compensation,
    CompensationStatus,
    Fence,
    HistoryKind,
    InvalidInputError,
    LeaseConflictError,
    LeaseLost,
    NoTaskAvailable,
    NotFoundError,
    TaskState,
    TerminalTaskMutationError,
    UnauthorizedError,
    UnavailableError,
    VersionConflictError,
)

REPO = Path(__file__).resolve().parents[2]
COMP = Compensation("remove-worktree", "/tmp/wt", "clean up after failure")


def _skip_or_fail(reason: str) -> None:
    # CI sets LEASEHOLD_REQUIRE_SERVER=1: there a missing server is a failure,
    # never a silently skipped tier.
    if os.environ.get("LEASEHOLD_REQUIRE_SERVER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _binary() -> Path:
    env = os.environ.get("LEASEHOLD_BIN")
    candidates = [Path(env)] if env else []
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(Path(target) / "debug" / "leasehold")
    candidates.append(REPO / "target" / "debug" / "leasehold")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    _skip_or_fail(
        "no leasehold binary: build it with `cargo build -p leasehold-cli` or set LEASEHOLD_BIN"
        + (f" (LEASEHOLD_BIN={env} does not exist)" if env else "")
    )
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(workdir: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str, object]:
    binary = _binary()
    probe = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        _skip_or_fail(f"{binary} has no working `serve` command: {probe.stderr.strip()[:200]}")
    db = workdir / "server.db"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed by _stop_server
    proc = subprocess.Popen(
        [str(binary), "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"leasehold serve exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, url, log
        except OSError:
            pass
        if time.monotonic() > deadline:
            _stop_server(proc, log)
            pytest.fail("leasehold serve did not answer /healthz within 60s")
        time.sleep(0.05)


def _stop_server(proc: subprocess.Popen[bytes], log: object) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without tokens (every caller is an operator; loopback only)."""
    proc, url, log = _start_server(tmp_path_factory.mktemp("server"), [])
    try:
        yield url
    finally:
        _stop_server(proc, log)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with hashed bearer tokens: operator, reader and two workers."""
    workdir = tmp_path_factory.mktemp("auth-server")
    tokens_file = workdir / "tokens.json"
    secrets: dict[str, str] = {}
    for name, role in (("op", "operator"), ("reader", "reader"), ("w1", "worker"), ("w2", "worker")):
        out = subprocess.run(
            [str(_binary()), "token", "create", "--db", str(workdir / "server.db"), "--tokens", str(tokens_file),
             "--name", name, "--role", role, "--json"],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            _skip_or_fail(f"`leasehold token create` failed: {out.stderr.strip()[:200]}")
        secrets[name] = json.loads(out.stdout)["secret"]
    proc, url, log = _start_server(workdir, ["--tokens", str(tokens_file)])
    try:
        yield url, secrets
    finally:
        _stop_server(proc, log)


@pytest.fixture
def client(server: str) -> Client:
    return Client(server, None)


def _wait_for(cond, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- every operation --------------------------------------------------------


def test_operations_round_trip(client: Client) -> None:
    assert client.health()
    t = client.create("cl/ops-1", "saga-cl-ops-1", queue="ops", priority=3, issue=7, branch="b",
                      worktree="/w", metadata={"k": 1}, compensations=[COMP])
    assert t.state is TaskState.PLANNED and t.version == 1 and t.queue == "ops"
    assert client.get("cl/ops-1") == t  # the "/" survives the path
    assert client.get("cl/missing") is None
    with pytest.raises(NotFoundError):
        client.require("cl/missing")
    assert client.dispatch("cl/ops-1").state is TaskState.DISPATCHED
    a = client.acquire_lease("cl/ops-1", owner="worker-a", ttl=60)
    assert a.state is TaskState.RUNNING and a.fence == Fence("worker-a", 1)
    with pytest.raises(LeaseConflictError):
        client.acquire_lease("cl/ops-1", owner="worker-b", ttl=60)
    hb = client.heartbeat("cl/ops-1", fence=a.fence, ttl=120)  # type: ignore[arg-type]
    assert hb.lease_expires_at > a.lease_expires_at  # type: ignore[operator]
    with pytest.raises(LeaseConflictError):
        client.heartbeat("cl/ops-1", fence=Fence("worker-a", 99), ttl=120)
    rel = client.release("cl/ops-1", fence=a.fence)  # type: ignore[arg-type]
    assert rel.state is TaskState.DISPATCHED and rel.lease_token == 1
    (b,) = client.claim(queues=["ops"], ttl=60, owner="worker-b")
    assert b.task_id == "cl/ops-1" and b.lease_token == 2
    assert client.claim(queues=["ops"], ttl=60, owner="worker-c") == []
    with pytest.raises(LeaseConflictError):
        client.complete("cl/ops-1", fence=a.fence)
    done = client.complete("cl/ops-1", reason="ok", fence=b.fence)
    assert done.state is TaskState.COMPLETED and done.terminal_reason == "ok"
    with pytest.raises(TerminalTaskMutationError):
        client.acquire_lease("cl/ops-1", owner="worker-a", ttl=60)
    noted = client.annotate("cl/ops-1", note="audited", author="op")
    assert noted.notes[-1].note == "audited"
    rec = client.record_compensation("cl/ops-1", 0, status=CompensationStatus.APPLIED, detail="gone")
    assert rec.compensations[0].status is CompensationStatus.APPLIED
    kinds = [h.kind for h in client.history("cl/ops-1")]
    assert kinds == [HistoryKind.CREATED, HistoryKind.DISPATCHED, HistoryKind.LEASED, HistoryKind.RELEASED,
                     HistoryKind.LEASED, HistoryKind.COMPLETED, HistoryKind.ANNOTATED,
                     HistoryKind.COMPENSATION_RECORDED]


def test_fail_quarantine_compensate_put_list_counts(client: Client) -> None:
    client.create("cl-f", "saga-cl-f", queue="misc")
    with pytest.raises(LeaseConflictError, match="compensation"):
        client.fail("cl-f", reason="boom")
    failed = client.fail("cl-f", reason="boom", compensation=COMP)
    assert failed.state is TaskState.FAILED and failed.compensations[0].kind == "remove-worktree"
    client.create("cl-q", "saga-cl-q", queue="misc")
    with pytest.raises(InvalidInputError):
        client.quarantine("cl-q", reason="")
    assert client.quarantine("cl-q", reason="manual").state is TaskState.QUARANTINED
    client.create("cl-c", "saga-cl-c", queue="misc")
    assert client.compensate("cl-c", reason="undone").state is TaskState.COMPENSATED
    p = client.create("cl-p", "saga-cl-p", queue="misc", branch="one")
    from dataclasses import replace

    p2 = client.put(replace(p, branch="two"), expected_version=p.version)
    assert p2.branch == "two" and p2.version == p.version + 1
    with pytest.raises(VersionConflictError):
        client.put(replace(p, branch="three"), expected_version=p.version)
    with pytest.raises(AlreadyExistsError):
        client.create("cl-p", "saga-other")
    with pytest.raises(InvalidInputError):
        client.create("has space", "saga-x")
    page = client.list(queue="misc", limit=2)
    assert [t.task_id for t in page.tasks] == ["cl-f", "cl-q"] and page.next_cursor
    rest = client.list(queue="misc", cursor=page.next_cursor)
    assert [t.task_id for t in rest.tasks] == ["cl-c", "cl-p"]
    assert [t.task_id for t in client.list(queue="misc", states=["planned"]).tasks] == ["cl-p"]
    assert "cl-p" in [t.task_id for t in client.list_in_flight()]
    assert "cl-f" not in [t.task_id for t in client.list_in_flight()]
    counts = client.counts()
    assert set(counts) == set(TaskState) and counts[TaskState.FAILED] >= 1
    assert isinstance(client.list_stale(), list)
    assert isinstance(client.reclaim(max_attempts=5), list)


def test_unreachable_server_is_unavailable() -> None:
    dead = Client(f"http://127.0.0.1:{_free_port()}", None, timeout=2)
    with pytest.raises(UnavailableError) as info:
        dead.get("x")
    assert info.value.retryable
    assert not dead.health()
    with pytest.raises(InvalidInputError):
        Client("127.0.0.1:1")


def test_threads_race_over_http_exactly_one_winner(client: Client) -> None:
    client.create("cl-race", "saga-cl-race")
    n = 12
    barrier = threading.Barrier(n)
    outcome: list[str] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            client.acquire_lease("cl-race", owner=f"w{i}", ttl=60)
            outcome.append("won")
        except LeaseConflictError:
            outcome.append("conflict")
        except Exception as e:  # noqa: BLE001 - counted and asserted
            outcome.append(repr(e))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome) == ["conflict"] * (n - 1) + ["won"]


# -- the worker helper -----------------------------------------------------


def test_lease_helper_completes_on_normal_exit(client: Client) -> None:
    client.create("wk-ok", "saga-wk-ok", queue="wk-ok")
    with client.lease(queue="wk-ok", ttl=30, owner="worker-ok") as lease:
        assert lease.task.task_id == "wk-ok" and lease.fence == Fence("worker-ok", 1)
        assert lease.interval == pytest.approx(10.0)  # ttl/3
        lease.check()
    t = client.require("wk-ok")
    assert t.state is TaskState.COMPLETED
    last = client.history("wk-ok")[-1]
    assert last.kind is HistoryKind.COMPLETED and last.actor == "worker-ok"


def test_lease_helper_fails_with_the_exception_and_compensation(client: Client) -> None:
    client.create("wk-err", "saga-wk-err", queue="wk-err")
    with pytest.raises(RuntimeError, match="disk full"):
        with client.lease(queue="wk-err", ttl=30, owner="worker-e", compensation=COMP):
            raise RuntimeError("disk full")
    t = client.require("wk-err")
    assert t.state is TaskState.FAILED
    assert t.terminal_reason == "RuntimeError: disk full"
    assert [c.compensation for c in t.compensations] == [COMP]


def test_lease_helper_releases_when_there_is_no_compensation(client: Client) -> None:
    client.create("wk-rel", "saga-wk-rel", queue="wk-rel")
    with pytest.raises(ValueError):
        with client.lease(queue="wk-rel", ttl=30, owner="worker-r"):
            raise ValueError("bad input")
    t = client.require("wk-rel")
    assert t.state is TaskState.DISPATCHED and t.lease_owner is None
    assert client.history("wk-rel")[-1].kind is HistoryKind.RELEASED


def test_lease_helper_heartbeats_in_the_background(client: Client) -> None:
    client.create("wk-hb", "saga-wk-hb", queue="wk-hb")
    with client.lease(queue="wk-hb", ttl=30, owner="worker-h", heartbeat_interval=0.05) as lease:
        first_expiry = lease.task.lease_expires_at
        _wait_for(lambda: lease.heartbeats >= 2, "two background heartbeats")
        stored = client.require("wk-hb")
        assert stored.lease_expires_at > first_expiry  # type: ignore[operator]
        assert stored.lease_owner == "worker-h" and stored.lease_token == lease.fence.token
    assert client.require("wk-hb").state is TaskState.COMPLETED


def test_lease_helper_raises_lease_lost_at_next_check(client: Client) -> None:
    client.create("wk-lost", "saga-wk-lost", queue="wk-lost")
    with pytest.raises(LeaseLost):
        with client.lease(queue="wk-lost", ttl=30, owner="worker-l", heartbeat_interval=0.05) as lease:
            lease.check()  # fine so far
            client.quarantine("wk-lost", reason="operator pulled it")  # operator, no fence
            _wait_for(lambda: lease.lost, "the heartbeat thread to notice the loss")
            lease.check()  # raises LeaseLost
            pytest.fail("check() did not raise")  # pragma: no cover
    t = client.require("wk-lost")
    assert t.state is TaskState.QUARANTINED and t.terminal_reason == "operator pulled it"


def test_lease_helper_explicit_heartbeat_detects_loss(client: Client) -> None:
    client.create("wk-lost2", "saga-wk-lost2", queue="wk-lost2", compensations=[COMP])
    with pytest.raises(LeaseLost):
        with client.lease(queue="wk-lost2", ttl=30, owner="worker-m") as lease:
            client.fail("wk-lost2", reason="operator failed it")
            lease.heartbeat()
    assert client.require("wk-lost2").terminal_reason == "operator failed it"


def test_lease_helper_with_nothing_to_claim(client: Client) -> None:
    with pytest.raises(NoTaskAvailable):
        with client.lease(queue="wk-empty", ttl=30):
            pytest.fail("entered without a task")  # pragma: no cover


def test_async_client_and_async_lease(server: str) -> None:
    async def main() -> None:
        ac = AsyncClient(server, None)
        await ac.create("as-1", "saga-as-1", queue="async")
        async with ac.lease(queue="async", ttl=30, owner="async-worker") as lease:
            assert lease.task.task_id == "as-1"
            t = await lease.heartbeat()
            assert t.lease_owner == "async-worker"
        got = await ac.require("as-1")
        assert got.state is TaskState.COMPLETED
        assert (await ac.get("as-missing")) is None
        assert [h.kind for h in await ac.history("as-1")][-1] is HistoryKind.COMPLETED

    asyncio.run(main())


# -- with bearer tokens ----------------------------------------------------


def test_tokens_and_roles(auth_server: tuple[str, dict[str, str]]) -> None:
    url, secrets = auth_server
    op, reader, w1 = (Client(url, secrets[n]) for n in ("op", "reader", "w1"))
    with pytest.raises(UnauthorizedError):
        Client(url, None).get("anything")
    with pytest.raises(UnauthorizedError):
        Client(url, "lh_not-a-real-token").get("anything")
    op.create("auth-1", "saga-auth-1", queue="auth")
    assert reader.require("auth-1").state is TaskState.PLANNED
    with pytest.raises(ForbiddenError):
        reader.create("auth-2", "saga-auth-2")
    with pytest.raises(ForbiddenError):
        w1.claim(queues=["auth"], ttl=30, owner="w2")  # a worker can only be itself
    (t,) = w1.claim(queues=["auth"], ttl=30)
    assert t.lease_owner == "w1"  # owner defaults to the token's name


def test_worker_tokens_lease_helper_and_takeover(auth_server: tuple[str, dict[str, str]]) -> None:
    url, secrets = auth_server
    op, w1, w2 = (Client(url, secrets[n]) for n in ("op", "w1", "w2"))
    op.create("auth-ok", "saga-auth-ok", queue="auth-ok")
    with w1.lease(queue="auth-ok", ttl=30) as lease:
        assert lease.fence.owner == "w1"
        lease.heartbeat()
    assert op.require("auth-ok").state is TaskState.COMPLETED
    assert op.history("auth-ok")[-1].actor == "w1"

    # w1's lease is released by an operator and taken by w2: w1's next
    # heartbeat is refused (403, the task is w2's) and surfaces as LeaseLost.
    op.create("auth-take", "saga-auth-take", queue="auth-take", compensations=[COMP])
    with pytest.raises(LeaseLost):
        with w1.lease(queue="auth-take", ttl=30) as lease:
            op.release("auth-take", fence=lease.fence)
            (taken,) = w2.claim(queues=["auth-take"], ttl=30)
            assert taken.lease_owner == "w2" and taken.lease_token == lease.fence.token + 1
            lease.heartbeat()
    t = op.require("auth-take")
    assert t.state is TaskState.RUNNING and t.lease_owner == "w2"  # w1 recorded nothing
