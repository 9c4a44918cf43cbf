"""An upload whose process dies is finished by a new process, which sends only the missing parts."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fault_proxy import PASS, Decision, FaultProxy
from faults_helpers import latest, part_puts

from tilde.core.errors import APIError, ServerError
from tilde.data import Client, MultipartUpload, Repository
from tilde.server import LocalServer

MIB = 1024 * 1024

# The first process: sends parts one at a time and dies (SIGKILL, no cleanup) right after part 3 is in.
DYING_UPLOADER = """
import json, os, signal, sys
from pathlib import Path
import tilde.data._multipart as engine
from tilde.data import Client, MultipartUpload

endpoint, key, repo_path, session_id, upload_file, source = sys.argv[1:7]
real_send = engine._send_once
sent = []

def send_then_die(http, url, chunks, headers):
    etag = real_send(http, url, chunks, headers)
    sent.append(etag)
    if len(sent) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return etag

engine._send_once = send_then_die
upload = MultipartUpload.from_dict(json.loads(Path(upload_file).read_text()))
settings = {"multipart_part_size": 1024 * 1024, "max_parts_in_flight": 1}
with Client(endpoint_url=endpoint, api_key=key, **settings) as client:
    client.repository(repo_path).attach(session_id).objects.resume_upload(upload, Path(source))
"""


def test_an_upload_interrupted_by_the_process_dying_is_resumed_by_a_new_one(
    behind_proxy: tuple[FaultProxy, LocalServer], proxy: FaultProxy, faulty_repo: Repository, tmp_path: Path
) -> None:
    server = behind_proxy[1]
    source = tmp_path / "data.bin"
    data = random.Random(5).randbytes(8 * MIB + 123)
    source.write_bytes(data)
    repo_path = f"{faulty_repo.org}/{faulty_repo.name}"
    client = faulty_repo._client
    client.upload_settings = type(client.upload_settings)(part_size=MIB)  # type: ignore[attr-defined]
    session = faulty_repo.session()
    upload = session.objects.start_upload("resumed.bin")
    saved = tmp_path / "upload.json"
    saved.write_text(json.dumps(upload.to_dict()))

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            DYING_UPLOADER,
            proxy.url,
            server.api_key,
            repo_path,
            session.id,
            str(saved),
            str(source),
        ],
        check=False,
    )
    assert child.returncode == -signal.SIGKILL
    assert sorted(part_puts(proxy)) == [1, 2, 3]
    proxy.records.clear()

    # A new process (this one): the same session, the saved upload, the same file.
    with Client(endpoint_url=proxy.url, api_key=server.api_key, multipart_part_size=4 * MIB) as fresh:
        attached = fresh.repository(repo_path).attach(session.id)
        restored = MultipartUpload.from_dict(json.loads(saved.read_text()))
        result = attached.objects.resume_upload(restored, source)
        assert result.path == "resumed.bin"
        # Only the 6 missing parts travelled, in the part size the upload started with (the server's).
        assert sorted(part_puts(proxy)) == [4, 5, 6, 7, 8, 9]
        commit_id = attached.commit("finished by another process")
    assert commit_id
    assert latest(faulty_repo).get("resumed.bin").read() == data
    assert [commit.id for commit in faulty_repo.commits.list()] == [commit_id]
    # The upload is consumed with its session: resuming it again is refused, nothing is staged twice.
    with pytest.raises(APIError):
        faulty_repo.attach(session.id).objects.resume_upload(restored, source)


def test_a_resumed_upload_resends_a_part_the_server_holds_different_bytes_of(
    proxy: FaultProxy, faulty_repo: Repository
) -> None:
    client = faulty_repo._client
    client.upload_settings = type(client.upload_settings)(part_size=MIB)  # type: ignore[attr-defined]
    first = random.Random(6).randbytes(3 * MIB)
    changed = first[:MIB] + bytes(MIB) + first[2 * MIB :]

    def refuse_completion(
        method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Decision:
        return Decision("unavailable") if path.endswith("/multipart/complete") else PASS

    with faulty_repo.session() as session:
        upload = session.objects.start_upload("changed.bin")
        # Every part of the first version arrives, but the completion does not (a 503 on a POST: not retried,
        # and a resumable upload is not aborted).
        proxy.plan = refuse_completion
        with pytest.raises(ServerError):
            session.objects.resume_upload(upload, first)
        proxy.plan = lambda method, path, query, headers: PASS
        proxy.records.clear()
        session.objects.resume_upload(upload, changed)
        assert sorted(part_puts(proxy)) == [2]
        assert session.objects.get("changed.bin").read() == changed
        session.commit("resent the changed part")
