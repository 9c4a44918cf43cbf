"""A short tour of Tilde: versioned data plus sandboxed compute, on an embedded local server.

Run it with ``hatch run demo``. It needs nothing else running: it starts ``tilde-server`` in a temporary
directory, creates an organization and a repository, uploads a small weather dataset, runs one sandbox that
transforms the data (its changes are committed) and one that fails half-way (its changes are rolled back),
then shows the log and the diff and reads the result back.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import tilde
from tilde.server import LocalServer
from tilde.server.sandbox.preflight import sandbox_preflight

HERE = Path(__file__).resolve().parent
started = time.perf_counter()


def say(title: str) -> None:
    """Print a section heading with the elapsed time."""
    print(f"\n[{time.perf_counter() - started:5.1f}s] {title}")


def show(text: str, indent: str = "    ") -> None:
    """Print text indented under the current heading."""
    for line in text.rstrip("\n").splitlines():
        print(f"{indent}{line}")


def tour(server: LocalServer) -> None:
    """Walk through the data and compute features against a running server."""
    tilde.configure(api_key=server.api_key, endpoint_url=server.endpoint_url)

    say("Create an organization and a repository")
    org = tilde.organizations.create("demo", display_name="Demo Org")
    org.repositories.create("weather", description="Hourly station readings")
    repo = tilde.repository("demo/weather")
    show(f"{repo!r}: {repo.description}")

    say("Upload the raw dataset in one transactional session")
    with repo.session() as session:
        for name in ("readings.csv", "stations.csv"):
            session.objects.put(f"raw/{name}", HERE / "data" / name)
        session.objects.put("raw/upload.tmp", b"scratch file the transform cleans up\n")
        session.objects.put("scripts/summarize.py", HERE / "scripts" / "summarize.py")
        session.objects.put("scripts/clean_and_crash.py", HERE / "scripts" / "clean_and_crash.py")
        staged = [entry.path for entry in session.uncommitted()]
        show(f"staged {len(staged)} objects: {', '.join(staged)}")
        upload_commit = session.commit("Upload raw readings")
    show(f"committed {upload_commit}")

    say("Run a sandbox that transforms the data (it succeeds, so its changes are committed)")
    result = repo.execute("python3 /sandbox/scripts/summarize.py", image="python:3.12")
    show(result.stdout.text())
    transform = next(iter(repo.commits.list(amount=1)))
    show(f"new head {transform.id}: {transform.message!r}")

    say("Run a sandbox that fails half-way (its changes are rolled back)")
    before = {entry.path: entry.entry.e_tag for entry in transform.objects.list() if entry.entry}
    failed = repo.execute("python3 /sandbox/scripts/clean_and_crash.py", check=False)
    show(failed.stdout.text())
    show(f"exit code {failed.exit_code}")
    head = next(iter(repo.commits.list(amount=1)))
    after = {entry.path: entry.entry.e_tag for entry in head.objects.list() if entry.entry}
    unchanged = head.id == transform.id and before == after
    show(f"head still {head.id}; every object unchanged: {unchanged}")
    if not unchanged:
        raise SystemExit("the failed sandbox changed the repository")

    say("The log, newest first")
    for commit in repo.commits.list():
        show(f"{commit.id[:12]}  {commit.committer:<8} {commit.message}")

    say("What the transform changed")
    for change in transform.diff():
        show(f"{change.status:<9} {change.path}")

    say("Read the result back from the commit")
    with transform.objects.get("summary/report.txt") as f:
        show(f.read().decode())
    with transform.objects.get("summary/daily_means.csv", byte_range=(0, 120)) as f:
        show(f.read().decode().rsplit("\n", 1)[0] + "\n...")
        show(f"({f.content_range})")

    say("An interactive shell: several commands in one sandbox, committed on a clean exit")
    with repo.shell() as sh:
        rows = sh.run("wc -l < /sandbox/summary/daily_means.csv").stdout.text().strip()
        sh.run("mkdir -p /sandbox/notes && echo 'reviewed by the tour' > /sandbox/notes/README")
        show(f"daily_means.csv has {rows} lines; wrote notes/README")
    # Leaving the block cleanly committed the changes and waited for the commit: it is the head now.
    head = next(iter(repo.commits.list(amount=1)))
    if sh.result is None or not sh.result.is_committed or sh.commit_id != head.id:
        raise SystemExit(f"the shell's changes were not committed: {sh.result!r}")
    show(f"head is now {head.id}: {head.message!r}")
    for change in head.diff():
        show(f"{change.status:<9} {change.path}")


def main() -> int:
    """Start an embedded server in a temporary directory and run the tour against it."""
    warnings.simplefilter("default")
    # Before anything is uploaded: the tour needs sandboxes, so say in one line when they cannot run here.
    problem = sandbox_preflight()
    if problem is not None:
        print(f"error: sandboxes cannot run on this machine: {problem}", file=sys.stderr)
        return 1
    # The tour runs offline: its embedded server runs every image name on this machine's own root filesystem
    # (read-only; each sandbox's image_note says so) instead of pulling images from a registry.
    os.environ.setdefault("TILDE_SERVER_HOST_IMAGE", "all")
    with LocalServer() as server:  # no data_dir: a temporary one, removed when the server stops
        print(f"tilde-server running at {server.endpoint_url} (data in a temporary directory)")
        tour(server)
    say("Done: the server stopped and its temporary data is gone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
