"""The published README's first compute example, unchanged, against a server whose registry mirror holds a
``python:3.12`` image:

```python
with repo.shell(image="python:3.12") as sh:
    sh.run("pip install pandas")
    sh.run("python train.py")
```

The image is the Debian python image of ``tests/oci_images`` pushed to a local registry as
``library/python:3.12``; ``pip install pandas`` is served by a tiny PEP 503 index on loopback (a wheel named
pandas built here), which the sandbox reaches only through its egress proxy because the server names it as its
package index.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_images import push, python_image
from run_support import Repo, image_server, registry_address

from tilde.compute import Client

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

TRAIN = b"""\
import pandas

frame = pandas.DataFrame({"x": [1, 2, 3]})
with open("model.txt", "w") as out:
    out.write(f"trained on {len(frame)} rows with pandas {pandas.__version__}\\n")
with open("/sandbox/results.csv", "w") as out:
    out.write("x\\n1\\n2\\n3\\n")
print("training done")
"""

PANDAS_INIT = b"""\
__version__ = "2.2.99"


class DataFrame:
    def __init__(self, columns):
        self.columns = dict(columns)

    def __len__(self):
        return max((len(v) for v in self.columns.values()), default=0)
"""


def _wheel() -> tuple[str, bytes]:
    """A pure-Python wheel named pandas (PEP 427), built in memory."""
    name = "pandas-2.2.99-py3-none-any.whl"
    info = "pandas-2.2.99.dist-info"
    files = {
        "pandas/__init__.py": PANDAS_INIT,
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: pandas\nVersion: 2.2.99\n",
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tilde-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


@contextlib.contextmanager
def package_index() -> Iterator[int]:
    """A PEP 503 simple index on 127.0.0.1 serving one wheel; yields its port."""
    name, wheel = _wheel()
    digest = hashlib.sha256(wheel).hexdigest()
    pages = {
        "/simple/": b'<a href="/simple/pandas/">pandas</a>',
        "/simple/pandas/": f'<a href="/files/{name}#sha256={digest}">{name}</a>'.encode(),
        f"/files/{name}": wheel,
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            kind = "application/octet-stream" if self.path.endswith(".whl") else "text/html"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _starting_reasons(repo: Repo, sandbox_id: str) -> tuple[set[str], list[dict[str, int]]]:
    """Poll a starting sandbox until it runs; returns the reasons seen and the pull progress reports."""
    reasons: set[str] = set()
    progress: list[dict[str, int]] = []
    deadline = time.monotonic() + 600
    while True:
        status = repo.status(sandbox_id)
        if status["status"] != "starting":
            return reasons, progress
        reasons.add(status["status_reason"])
        if "pull" in status:
            progress.append(status["pull"])
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


PUBLISHED_SCRIPT = Path(__file__).with_name("published_readme_script.py")


def test_the_readme_compute_example_runs_unchanged(tmp_path: Path, published_python: Path) -> None:
    with contextlib.ExitStack() as stack:
        registries = contextlib.ExitStack()
        stack.callback(registries.close)
        registry = registries.enter_context(registry_address(tmp_path / "registry"))
        push(python_image(), f"{registry}/library/python:3.12")
        port = stack.enter_context(package_index())
        server = stack.enter_context(
            image_server(
                tmp_path / "data",
                registry,
                package_indexes=[f"http://localhost:{port}/simple"],
                network_allow=[f"127.0.0.1:{port}", f"[::1]:{port}"],
            )
        )
        repo = stack.enter_context(Repo.create(server))
        client = stack.enter_context(Client(endpoint_url=server.endpoint_url, api_key=server.api_key))
        handle = client.repository(repo.path)
        with handle.session() as session:
            session.objects.put("train.py", TRAIN)
            session.commit("training script")

        # The first sandbox on the image pulls it, and says so while it does.
        first = repo.start(image="python:3.12", command=["python", "--version"])
        reasons, progress = _starting_reasons(repo, first)
        assert "pulling" in reasons
        assert progress
        assert progress[-1]["total_bytes"] > 0
        assert all(0 <= p["done_bytes"] <= p["total_bytes"] for p in progress)
        assert repo.wait(first)["status"] == "done"
        assert repo.logs(first).startswith("Python 3")

        # The README example, unchanged.
        with handle.shell(image="python:3.12") as sh:
            installed = sh.run("pip install pandas")
            trained = sh.run("python train.py")
            refused = sh.run(
                "python -c \"import urllib.request; urllib.request.urlopen('http://example.com/')\""
            )
        assert installed.exit_code == 0, installed.stdout.text() + installed.stderr.text()
        assert "Successfully installed pandas-2.2.99" in installed.stdout.text()
        assert trained.exit_code == 0, trained.stderr.text()
        assert trained.stdout.text() == "training done\n"
        assert refused.exit_code != 0  # example.com is not a package index: the proxy refuses it

        sandbox_id = sh.sandbox.id
        status = repo.wait(sandbox_id)
        assert (status["status"], status["status_reason"]) == ("done", "committed"), status
        assert repo.read("model.txt") == b"trained on 3 rows with pandas 2.2.99\n"

        # The published client runs the README's Quick Start verbatim against the same server.
        published = subprocess.run(
            [str(published_python), str(PUBLISHED_SCRIPT), repo.path],
            capture_output=True,
            text=True,
            timeout=280,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(published_python.parent.parent),
                "TILDE_API_KEY": server.api_key,
                "TILDE_ENDPOINT_URL": server.endpoint_url,
            },
        )
        assert published.returncode == 0, published.stdout + published.stderr
        assert published.stdout.split() == ["training", "done", "x", "1", "2", "3"], published.stdout
        lines = repo.api.get(f"{repo.base}/sandboxes/{sandbox_id}/logs/network").text.splitlines()
        network = [json.loads(line) for line in lines]
        allowed = {entry["url"].split("/")[2] for entry in network if entry["decision"] == "allow"}
        denied = {entry["url"].split("/")[2] for entry in network if entry["decision"] == "deny"}
        assert allowed == {f"localhost:{port}"}, network
        assert "example.com" in {host.partition(":")[0] for host in denied}, network

        # The install vanished with its sandbox, and a second start needs no registry: the image is cached.
        registries.close()
        status, log = repo.run(
            image="python:3.12", command=["sh", "-c", "python -c 'import pandas' 2>&1 | tail -n 1"]
        )
        assert status["status"] == "done", status
        assert "No module named 'pandas'" in log
