"""A multipart upload of a file streams each part from the file: the client never holds a whole part."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tilde.data import Client, ReadOnlyObjects
from tilde.server import LocalServer

MIB = 1024 * 1024

UPLOADER = """
import json, sys
from pathlib import Path
from tilde.data import Client

endpoint, key, repo_path, source = sys.argv[1:5]
settings = {"multipart_part_size": 64 * 1024 * 1024, "max_parts_in_flight": 4}
with Client(endpoint_url=endpoint, api_key=key, **settings) as client:
    with client.repository(repo_path).session() as session:
        session.objects.put("big.bin", Path(source))
        session.commit("streamed")
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(json.dumps({"peak": int(line.split()[1]) * 1024}))
"""


@pytest.mark.slow
def test_a_256_mib_upload_peaks_well_under_its_parts_in_flight(
    server: LocalServer, repo_path: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as sink:
        for index in range(256):
            sink.write(index.to_bytes(4, "big") * (MIB // 4))
    done = subprocess.run(
        [sys.executable, "-c", UPLOADER, server.endpoint_url, server.api_key, repo_path, str(source)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    peak = json.loads(done.stdout)["peak"]
    # Four 64 MiB parts in flight would be 256 MiB held; read as they are sent, they cost a few MiB each.
    assert peak < 128 * MIB, peak / MIB
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        repo = client.repository(repo_path)
        reader = ReadOnlyObjects(client, repo.org, repo.name).get("big.bin", cache=False)
        with reader, source.open("rb") as expected:
            for chunk in reader.iter_bytes(4 * MIB):
                assert chunk == expected.read(len(chunk))
            assert expected.read() == b""
