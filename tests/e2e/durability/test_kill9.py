"""``kill -9`` of the server in the middle of work, again and again: nothing acknowledged is lost.

The server runs in its own process (``python -m tilde.server serve``) on one data directory and is killed with
SIGKILL 21 times across two scenarios, then started again each time:

- 11 times in the middle of a burst of 100 concurrent committers (raw HTTP: session, two files staged by
  presigned uploads or by one batch request, commit);
- 5 times around each of two multipart uploads of 64 MiB parts: 1 GiB with its parts written in place into
  one file (our SDK), and 256 MiB with a blob per part that ``complete`` concatenates (the published
  client): three times while parts are in flight (after 3, 7 and 11 parts of 16; 1, 2 and 3 of 4), once
  while ``complete`` assembles the object, and once right after the commit was acknowledged.

The commit bursts are where a crash can tear a transaction, so they get most kills; a 1 GiB upload takes
seconds per pass on a small machine, so it is killed at the points that differ (parts, assembly, commit)
rather than 20 times over. After every kill, with the server down, SQLite's ``integrity_check`` passes on
every database; after every restart:

- every acknowledged commit is in the log, and its files are at the head, byte-identical (etags for all of
  them, full content for the newest), and nothing is half-applied: each attempted commit shows all of its
  paths or none;
- the temporary files the killed process left (blob writes, part blobs, concatenations, batch spools) are
  swept, and the start logs how many, except the file of an in-place multipart upload that can still be
  completed (it is completed after the restart, sending only the missing parts).
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from durability_server import KillableServer

pytestmark = pytest.mark.slow

COMMITTERS = 100
BURST_KILLS = 11
#: Commits acknowledged in a burst before the kill may come (then a random moment later).
ACKS_BEFORE_KILL = 5
PART_SIZE = 64 * 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KillableServer]:
    srv = KillableServer(tmp_path / "data", tmp_path / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _repository(server: KillableServer) -> str:
    """Create an organization and a repository; return the repository's API base URL."""
    suffix = random.Random().randbytes(5).hex()
    with server.client(headers=server.auth) as http:
        org = http.post(server.api + "/organizations", json={"name": f"org-{suffix}", "display_name": "o"})
        assert org.status_code == 201, org.text
        repo = http.post(
            f"{server.api}/organizations/org-{suffix}/repositories",
            json={"name": f"repo-{suffix}", "visibility": "private"},
        )
        assert repo.status_code == 201, repo.text
    return f"/organizations/org-{suffix}/repositories/repo-{suffix}"


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def _after_restart(server: KillableServer, checks: dict[str, int]) -> None:
    """Databases intact while down; after the start, leftovers swept and live upload files kept."""
    assert server.integrity_problems() == {}
    live = server.live_upload_files()
    leftovers = [name for name in server.temporary_files() if name not in live]
    checks["leftovers"] += len(leftovers)
    server.start()
    assert set(server.temporary_files()) <= live, "the restart left orphaned temporary files"
    assert live <= set(server.temporary_files()), "the restart deleted a live upload's file"


# -- 100 concurrent committers ---------------------------------------------------------------------


@dataclass
class Ledger:
    """What the committers tried and what the server acknowledged (client side, the source of truth)."""

    attempted: dict[str, dict[str, bytes]] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # commit id -> attempt key
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def presigned_acks(self) -> int:
        """Acknowledged commits of the committers using presigned uploads (even-numbered ones)."""
        with self.lock:
            return sum(int(key.split("-")[1]) % 2 == 0 for key in self.acked.values())


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            member = tarfile.TarInfo(path)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _committer(
    http: httpx.Client,
    server: KillableServer,
    repo: str,
    name: str,
    ledger: Ledger,
    rng: random.Random,
    batch: bool,
) -> None:
    """Commit two new files per session until the server goes away; record every attempt and every ack.

    The files go through presigned uploads (stage, PUT, finalize each) or, with ``batch``, one tar request.
    """
    api, auth = server.api + repo, server.auth
    for n in range(1_000_000):
        key = f"{name}-{n}"
        files = {f"c/{key}/a": rng.randbytes(rng.randint(1, 4096)), f"c/{key}/b": rng.randbytes(64 * 1024)}
        try:
            created = http.post(api + "/sessions", headers=auth)
            if created.status_code != 201:
                raise AssertionError(f"session: {created.status_code} {created.text}")
            session = created.json()["session_id"]
            with ledger.lock:
                ledger.attempted[key] = files
            if batch:
                # Half the committers stage both files in one request (a tar spooled to a temporary file).
                staged = http.post(
                    api + "/objects:batch",
                    params={"session_id": session, "prefix": f"c/{key}/"},
                    content=_tar(files),
                    headers={**auth, "Content-Type": "application/x-tar"},
                )
                if staged.status_code != 201:
                    raise AssertionError(f"batch: {staged.status_code} {staged.text}")
            for path, data in files.items() if not batch else ():
                where = {"session_id": session, "path": path}
                staged = http.put(api + "/object", params=where, headers=auth)
                if staged.status_code != 200:
                    raise AssertionError(f"stage: {staged.status_code} {staged.text}")
                put = http.put(staged.json()["upload_url"], content=data)
                if put.status_code != 200:
                    raise AssertionError(f"upload: {put.status_code} {put.text}")
                body = {"upload_token": staged.json()["upload_token"], "size_bytes": len(data)}
                done = http.post(api + "/object/finalize", params=where, json=body, headers=auth)
                if done.status_code != 201:
                    raise AssertionError(f"finalize: {done.status_code} {done.text}")
            committed = http.post(f"{api}/sessions/{session}", json={"message": key}, headers=auth)
            if committed.status_code != 200:
                raise AssertionError(f"commit: {committed.status_code} {committed.text}")
            with ledger.lock:
                ledger.acked[committed.json()["commit_id"]] = key
        except httpx.TransportError:
            return  # the server was killed
        except AssertionError as error:
            with ledger.lock:
                ledger.errors.append(f"{key}: {error}")
            return


def _pages(http: httpx.Client, url: str, auth: dict[str, str], **params: Any) -> Iterator[dict[str, Any]]:
    after: str | None = None
    while True:
        page = http.get(
            url, params={**params, "amount": 1000, **({"after": after} if after else {})}, headers=auth
        )
        assert page.status_code == 200, page.text
        body = page.json()
        yield from body["results"]
        pagination = body.get("pagination") or {}
        if not pagination.get("has_more") or not body["results"]:
            return
        after = pagination["next_offset"]


def _verify_commits(server: KillableServer, repo: str, ledger: Ledger, newest: list[str]) -> None:
    """Every acknowledged commit present and byte-identical; every attempt all-or-nothing."""
    api, auth = server.api + repo, server.auth
    with server.client() as http:
        logged = {commit["id"] for commit in _pages(http, api + "/log", auth)}
        missing = set(ledger.acked) - logged
        assert not missing, f"{len(missing)} acknowledged commits lost"
        head = {
            item["path"]: item["entry"]["e_tag"] for item in _pages(http, api + "/objects", auth, prefix="c/")
        }
        acked_keys = set(ledger.acked.values())
        expected_paths: set[str] = set()
        for key, files in ledger.attempted.items():
            expected_paths.update(files)
            present = [path in head for path in files]
            assert all(present) or not any(present), f"commit {key} is half-applied: {present}"
            if key in acked_keys:
                assert all(present), f"acknowledged commit {key} is missing its files"
            if any(present):
                assert [head[path] for path in files] == [_etag(data) for data in files.values()], key
        assert set(head) <= expected_paths, "files nobody committed"
        for commit_id in newest:
            for path, data in ledger.attempted[ledger.acked[commit_id]].items():
                read = http.get(api + "/object", params={"path": path, "ref": commit_id}, headers=auth)
                assert read.status_code == 200, read.text
                assert read.content == data, f"{path} at {commit_id} differs"


def test_kill_9_during_100_concurrent_committers(server: KillableServer) -> None:
    repo = _repository(server)
    ledger = Ledger()
    checks = {"leftovers": 0}
    rng = random.Random(8)
    for burst in range(BURST_KILLS):
        before = set(ledger.acked)
        limits = httpx.Limits(max_connections=COMMITTERS, max_keepalive_connections=COMMITTERS)
        with server.client(limits=limits) as http:
            workers = [
                threading.Thread(
                    target=_committer,
                    args=(
                        http,
                        server,
                        repo,
                        f"{burst}-{i}",
                        ledger,
                        random.Random(rng.random()),
                        i % 2 == 1,
                    ),
                    daemon=True,
                )
                for i in range(COMMITTERS)
            ]
            for worker in workers:
                worker.start()
            started, presigned = ledger.ack_count(), ledger.presigned_acks()
            # Kill once commits are being acknowledged; every third burst also waits for the slower
            # presigned committers (eight requests a commit) to land one (or for a while, whatever came).
            wait_presigned = burst % 3 == 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not ledger.errors:
                if ledger.ack_count() - started >= ACKS_BEFORE_KILL and (
                    not wait_presigned or ledger.presigned_acks() > presigned
                ):
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            server.kill()
            for worker in workers:
                worker.join(timeout=120)
                assert not worker.is_alive()
        assert ledger.errors == []
        _after_restart(server, checks)
        _verify_commits(server, repo, ledger, [c for c in ledger.acked if c not in before])
    assert server.kills == BURST_KILLS
    print(  # the numbers of the run, for the record (pytest -s)
        f"\n{server.kills} kills, {len(ledger.acked)} acknowledged commits "
        f"({ledger.presigned_acks()} with presigned uploads) "
        f"of {len(ledger.attempted)} attempted, "
        f"{checks['leftovers']} leftover temporary files seen, swept per start: {server.swept_counts()}"
    )
    assert checks["leftovers"] > 0, (
        "no kill landed while a blob was being written: the sweep was not exercised"
    )
    assert sum(server.swept_counts()) == checks["leftovers"], "the starts did not log what they swept"


# -- a 1 GiB multipart upload ------------------------------------------------------------------------


_BLOCK = random.Random(1).randbytes(1024 * 1024)


def _part(number: int) -> bytes:
    """Part ``number`` (1-based): 64 MiB, different from every other part."""
    shift = number * 4099
    return (_BLOCK[shift:] + _BLOCK[:shift]) * (PART_SIZE // len(_BLOCK))


class Upload:
    """One in-place multipart upload driven over raw HTTP, part by part."""

    def __init__(
        self, server: KillableServer, repo: str, session: str, path: str, in_place: bool, parts: int
    ) -> None:
        self.server, self.repo, self.session, self.path = server, repo, session, path
        self.parts = parts
        self.where = {"session_id": session, "path": path}
        self.in_place = in_place
        # With part_size the parts go into one file in place (our SDK); without it, each part is a blob of
        # its own and complete concatenates them (the published client).
        hint = {"part_size": str(PART_SIZE)} if in_place else {}
        with server.client() as http:
            started = http.post(
                server.api + repo + "/object/multipart", params={**self.where, **hint}, headers=server.auth
            )
        assert started.status_code == 200, started.text
        self.ids: dict[str, str] = started.json()
        self.etags: dict[int, str] = {}
        self.lock = threading.Lock()

    def send_parts(self, numbers: list[int], workers: int = 2) -> None:
        """Send parts with ``workers`` threads until done or the server goes away."""
        queue = list(numbers)

        def work() -> None:
            with self.server.client() as http:
                while True:
                    with self.lock:
                        if not queue:
                            return
                        number = queue.pop(0)
                    try:
                        params = {**self.where, **self.ids, "part_number": number}
                        url = http.get(
                            self.server.api + self.repo + "/object/multipart/part",
                            params=params,
                            headers=self.server.auth,
                        )
                        assert url.status_code == 200, url.text
                        put = http.put(url.json()["upload_url"], content=_part(number))
                        assert put.status_code == 200, put.text
                    except httpx.TransportError:
                        return
                    with self.lock:
                        self.etags[number] = put.headers["etag"]

        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        self._threads = threads

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=300)
            assert not thread.is_alive()

    def complete(self) -> httpx.Response:
        parts = [{"part_number": n, "etag": self.etags[n]} for n in range(1, self.parts + 1)]
        body = {
            **self.ids,
            "parts": parts,
            "content_type": "application/octet-stream",
            "size_bytes": self.parts * PART_SIZE,
        }
        with self.server.client() as http:
            return http.post(
                self.server.api + self.repo + "/object/multipart/complete",
                params=self.where,
                json=body,
                headers=self.server.auth,
            )


@functools.cache
def _expected_sha256(parts: int) -> str:
    hasher = hashlib.sha256()
    for number in range(1, parts + 1):
        hasher.update(_part(number))
    return hasher.hexdigest()


def _sha256_of_object(server: KillableServer, repo: str, **params: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with (
        server.client() as http,
        http.stream("GET", server.api + repo + "/object", params=params, headers=server.auth) as read,
    ):
        assert read.status_code == 200, read.read()
        for chunk in read.iter_bytes(8 * 1024 * 1024):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


@pytest.mark.parametrize(
    ("in_place", "parts", "part_kills"),
    # Kill while parts are in flight once this many parts were acknowledged. The published client's way
    # is run on 256 MiB only: it writes every byte twice (parts, then their concatenation).
    [(True, 16, (3, 7, 11)), (False, 4, (1, 2, 3))],
    ids=["in-place-1GiB", "blob-per-part-256MiB"],
)
def test_kill_9_around_a_large_multipart_upload(
    server: KillableServer, in_place: bool, parts: int, part_kills: tuple[int, ...]
) -> None:
    repo = _repository(server)
    checks = {"leftovers": 0}
    expected = _expected_sha256(parts)
    with server.client(headers=server.auth) as http:
        session = http.post(server.api + repo + "/sessions").json()["session_id"]
    upload = Upload(server, repo, session, "big.bin", in_place, parts)
    upload_file = f"u-{upload.ids['upload_id']}.tmp"

    # 1. Killed while parts are in flight, at three points: the acknowledged parts survive, the upload file
    #    is kept, and each time only the parts still missing are sent again.
    acknowledged = []
    for threshold in part_kills:
        missing = [n for n in range(1, parts + 1) if n not in upload.etags]
        upload.send_parts(missing)
        while len(upload.etags) < threshold:
            time.sleep(0.01)
        if not in_place:
            _wait_for_temporary(server, "w-")  # a part's blob is being written
        server.kill()
        upload.join()
        acknowledged.append(len(upload.etags))
        _after_restart(server, checks)
        if len(upload.etags) == parts:
            break  # the last parts landed before the kill took effect: nothing is left to interrupt
        assert (upload_file in server.temporary_files()) == in_place
    missing = [n for n in range(1, parts + 1) if n not in upload.etags]
    upload.send_parts(missing)
    upload.join()
    assert len(upload.etags) == parts

    # 2. Killed while complete assembles the object (hashes and installs the file, or concatenates parts).
    outcome: list[httpx.Response | Exception] = []
    completing = threading.Thread(target=lambda: outcome.append(_try(upload.complete)), daemon=True)
    completing.start()
    if in_place:
        time.sleep(0.2)  # complete hashes the file in place: nothing to see from outside
    else:
        _wait_for_temporary(server, "c-")  # the concatenation is being written
    server.kill()
    completing.join(timeout=300)
    _after_restart(server, checks)
    result = outcome[0]
    killed_in_complete = not isinstance(result, httpx.Response)
    if isinstance(result, httpx.Response):
        # Done before the kill landed: acknowledged, so it must be staged.
        assert result.status_code == 201, result.text
    else:
        retried = upload.complete()
        if retried.status_code != 201:
            # The kill came between installing the file as a blob and recording it: the upload is gone
            # (never acknowledged), so the client uploads again.
            assert retried.status_code in (400, 404, 409), retried.text
            upload = Upload(server, repo, session, "big.bin", in_place, parts)
            upload.send_parts(list(range(1, parts + 1)))
            upload.join()
            retried = upload.complete()
        assert retried.status_code == 201, retried.text

    # 3. Killed right after the commit was acknowledged: the commit is there, byte-identical.
    with server.client(headers=server.auth) as http:
        committed = http.post(f"{server.api}{repo}/sessions/{session}", json={"message": "large"})
    assert committed.status_code == 200, committed.text
    commit_id = committed.json()["commit_id"]
    server.kill()
    _after_restart(server, checks)
    assert server.temporary_files() == []
    assert _sha256_of_object(server, repo, path="big.bin", ref=commit_id) == (
        expected,
        parts * PART_SIZE,
    )
    assert server.kills == len(part_kills) + 2
    assert sum(server.swept_counts()) == checks["leftovers"], "the starts did not log what they swept"
    if not in_place:
        assert checks["leftovers"] >= len(part_kills), "kills mid-part left no temporary file to sweep"
    print(
        f"\n{server.kills} kills, parts acknowledged at the part kills: {acknowledged} of {parts}, "
        f"complete killed: {killed_in_complete}, "
        f"{checks['leftovers']} leftover temporary files seen, swept per start: {server.swept_counts()}"
    )


def _wait_for_temporary(server: KillableServer, prefix: str, timeout: float = 30.0) -> None:
    """Wait until the blob store has a temporary file named ``prefix…`` (something is being written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name.startswith(prefix) for name in server.temporary_files()):
            return
        time.sleep(0.005)


def _try(call: Any) -> httpx.Response | Exception:
    try:
        result: httpx.Response = call()
    except httpx.TransportError as error:
        return error
    return result
