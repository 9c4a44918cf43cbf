"""One-shot sandboxes: exactly the filesystem changes are committed, and only on success."""

from __future__ import annotations

import httpx
import pytest
from sandbox_helpers import Sandboxes, diff, head_commit, list_objects, put_objects, read_object, repo_url

pytestmark = pytest.mark.sandbox

SCRIPT = """
import os, shutil
with open("keep/edit.txt", "a") as f:
    f.write("appended\\n")
with open("added.bin", "wb") as f:
    f.write(bytes(range(256)))
os.remove("gone.txt")
shutil.rmtree("olddir")
# Opened for writing and rewritten with the same bytes: a copy-up, not a modification.
data = open("same.txt", "rb").read()
open("same.txt", "wb").write(data)
os.chmod("keep/untouched.txt", 0o600)
os.makedirs("empty/dir", exist_ok=True)
"""


@pytest.fixture
def seeded(api: httpx.Client, repo_path: str) -> str:
    return put_objects(
        api,
        repo_path,
        {
            "keep/edit.txt": b"original\n",
            "keep/untouched.txt": b"untouched\n",
            "gone.txt": b"bye\n",
            "olddir/a.txt": b"a\n",
            "olddir/sub/b.txt": b"b\n",
            "same.txt": b"same\n",
        },
    )


def test_edit_add_delete_are_committed_exactly(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    status, log = sandboxes.run_once(["python3", "-c", SCRIPT])
    assert (status["status"], status["status_reason"]) == ("done", "committed"), log
    assert status["exit_code"] == 0
    assert diff(api, repo_path, status["commit_id"]) == {
        "added.bin": "added",
        "keep/edit.txt": "modified",
        "gone.txt": "removed",
        "olddir/a.txt": "removed",
        "olddir/sub/b.txt": "removed",
    }
    assert read_object(api, repo_path, "keep/edit.txt") == b"original\nappended\n"
    assert read_object(api, repo_path, "added.bin") == bytes(range(256))
    assert sorted(list_objects(api, repo_path)) == [
        "added.bin",
        "keep/edit.txt",
        "keep/untouched.txt",
        "same.txt",
    ]


def test_directory_recreated_after_delete_keeps_only_new_files(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    script = "rm -r olddir && mkdir -p olddir/sub && echo b > olddir/sub/b.txt && echo c > olddir/c.txt"
    status, log = sandboxes.run_once(script)
    assert status["status_reason"] == "committed", log
    assert diff(api, repo_path, status["commit_id"]) == {"olddir/a.txt": "removed", "olddir/c.txt": "added"}


def test_read_only_run_has_no_changes(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    status, log = sandboxes.run_once("cat keep/edit.txt olddir/sub/b.txt")
    assert (status["status"], status["status_reason"]) == ("done", "no_changes")
    assert log == "original\nb\n"
    assert head_commit(api, repo_path) == seeded


def test_failing_command_commits_nothing(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    status, log = sandboxes.run_once("echo partial > partial.txt; rm gone.txt; echo failing >&2; exit 7")
    assert (status["status"], status["status_reason"], status["exit_code"]) == ("errored", "exit_non_zero", 7)
    assert status["error_message"]
    assert log == "failing\n"
    assert head_commit(api, repo_path) == seeded
    assert "partial.txt" not in list_objects(api, repo_path)


def test_timeout_commits_nothing(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    status, _ = sandboxes.run_once("echo x > late.txt; sleep 30", timeout_seconds=1)
    assert (status["status"], status["status_reason"]) == ("failed", "timeout")
    assert head_commit(api, repo_path) == seeded


def test_cancel_of_a_one_shot_commits_nothing(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    sid = sandboxes.create(command=["sh", "-c", "echo x > c.txt; sleep 30"])
    sandboxes.wait(sid, while_="starting")
    final = sandboxes.cancel(sid)
    assert (final["status"], final["status_reason"]) == ("cancelled", "cancelled_by_user")
    assert head_commit(api, repo_path) == seeded
    again = api.delete(f"{sandboxes.base}/{sid}")
    assert again.status_code == 409


def test_path_prefix_and_mountpoint(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    status, log = sandboxes.run_once(
        "pwd; ls -R; echo new > sub/n.txt; rm a.txt", path_prefix="olddir", mountpoint="/mnt/data"
    )
    assert status["status_reason"] == "committed", log
    assert log.splitlines()[0] == "/mnt/data"
    assert "edit.txt" not in log
    assert diff(api, repo_path, status["commit_id"]) == {
        "olddir/a.txt": "removed",
        "olddir/sub/n.txt": "added",
    }


def test_logs_merge_stdout_and_stderr_in_order(sandboxes: Sandboxes) -> None:
    status, log = sandboxes.run_once("echo 1; echo 2 >&2; echo 3; echo 4 >&2")
    assert status["status_reason"] == "no_changes"
    assert log == "1\n2\n3\n4\n"
    network = sandboxes.api.get(f"{sandboxes.base}/{sandboxes.create(command=['true'])}/logs/network")
    assert network.status_code == 200
    assert network.headers["content-type"].startswith("application/x-ndjson")
    assert network.text == ""


def test_status_long_poll_and_full_sandbox_object(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes
) -> None:
    sid = sandboxes.create(command=["sh", "-c", "exit 0"], env_vars={"A": "b"})
    status = sandboxes.wait(sid)
    assert status["status"] == "done"
    assert "host root filesystem" in status["image_note"]
    full = api.get(f"{sandboxes.base}/{sid}").json()
    assert full["id"] == sid
    assert full["command"] == ["sh", "-c", "exit 0"]
    assert full["mode"] == "one-shot"
    assert full["env_vars"] == {"A": "b"}
    assert full["finished_at"]
    listed = api.get(sandboxes.base, params={"amount": 1000}).json()["results"]
    assert sid in [item["id"] for item in listed]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"image": "  "}, "image"),
        ({"image": 5, "command": "true"}, "image"),
        ({"image": "x", "command": 5}, "command"),
        ({"image": "x", "command": "true", "mode": "bogus"}, "mode"),
        ({"image": "x", "command": "true", "mountpoint": "/etc"}, "mountpoint"),
        ({"image": "x", "command": "true", "timeout_seconds": 0}, "timeout"),
        ({"image": "x", "command": "true", "env_vars": {"A": 1}}, "A"),
        ({"image": "x", "command": "true", "path_prefix": "../up"}, "path_prefix"),
    ],
)
def test_invalid_requests_are_400(
    api: httpx.Client, repo_path: str, body: dict[str, object], fragment: str
) -> None:
    response = api.post(f"{repo_url(repo_path)}/sandboxes", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


def test_finish_is_only_for_service_sandboxes(sandboxes: Sandboxes) -> None:
    sid = sandboxes.create(command=["true"])
    response = sandboxes.api.post(f"{sandboxes.base}/{sid}/finish")
    assert response.status_code in (400, 409)
    sandboxes.wait(sid)
    assert sandboxes.api.post(f"{sandboxes.base}/{sid}/finish").status_code in (400, 409)


def test_unknown_sandbox_is_404(sandboxes: Sandboxes) -> None:
    response = sandboxes.api.get(f"{sandboxes.base}/00000000-0000-4000-8000-000000000000/status")
    assert response.status_code == 404


def test_agent_sandbox_commit_awaits_approval(api: httpx.Client, repo_path: str) -> None:
    org, repo = repo_path.split("/")
    base = repo_url(repo_path)
    assert api.put(base, json={"agent_commits_require_approval": True}).is_success
    assert api.post(f"/organizations/{org}/agents", json={"name": "builder"}).status_code == 201
    granted = api.put(f"/organizations/{org}/agents/builder", json={"inline_policy": "*()"})
    assert granted.status_code == 200, granted.text
    key = api.post(f"/organizations/{org}/agents/builder/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    headers = {"Authorization": f"Bearer {key.json()['token']}"}
    with httpx.Client(base_url=str(api.base_url), headers=headers, timeout=60) as agent_api:
        sandboxes = Sandboxes(agent_api, repo_path, "", "")
        sid = sandboxes.create(command=["sh", "-c", "echo draft > draft.txt"])
        status = sandboxes.wait(sid)
    assert (status["status"], status["status_reason"]) == ("done", "awaiting_approval"), status
    assert status["web_url"].endswith(f"/{org}/{repo}/approve/{sid}")
    assert head_commit(api, repo_path) is None
    assert api.head(f"{base}/sessions/{sid}/approve").status_code == 200
    approved = api.post(f"{base}/sessions/{sid}/approve", json={"message": "ok"})
    assert approved.status_code == 200, approved.text
    assert diff(api, repo_path, approved.json()["commit_id"]) == {"draft.txt": "added"}


def test_files_and_directories_replacing_each_other(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    # gone.txt becomes a directory; olddir (a directory) becomes a file.
    script = "rm gone.txt && mkdir gone.txt && echo in > gone.txt/inner && rm -r olddir && echo flat > olddir"
    status, log = sandboxes.run_once(script)
    assert status["status_reason"] == "committed", log
    assert diff(api, repo_path, status["commit_id"]) == {
        "gone.txt": "removed",
        "gone.txt/inner": "added",
        "olddir": "added",
        "olddir/a.txt": "removed",
        "olddir/sub/b.txt": "removed",
    }


def test_symlinks_and_invalid_names_are_skipped_with_a_warning(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    script = (
        "ln -s /etc/passwd link && ln -s same.txt rel && echo real > real.txt && "
        "echo x > \"$(printf 'bad\\001')\""
    )
    status, log = sandboxes.run_once(script)
    assert status["status_reason"] == "committed", log
    assert diff(api, repo_path, status["commit_id"]) == {"real.txt": "added"}
    assert "link" in status["warnings"][0]
    assert "bad" in status["warnings"][0]


LIST_TREE = (
    "find . \\( -type f -o -type c -o -type l \\) -printf '%y %p\\n' | sort; cat keep/edit.txt same.txt"
)


def test_commits_stack_as_thin_layers_with_exact_contents(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    # The first sandbox builds the seeded commit's tree; the commits after it are stacked on it as layers.
    status, log = sandboxes.run_once("echo v2 >> keep/edit.txt && rm gone.txt && mkdir new && echo x > new/x")
    assert status["status_reason"] == "committed", log
    status, log = sandboxes.run_once(f"{LIST_TREE}; rm new/x olddir/a.txt; echo same2 > same.txt")
    assert status["status_reason"] == "committed", log
    assert log.splitlines() == [
        "f ./keep/edit.txt",
        "f ./keep/untouched.txt",
        "f ./new/x",
        "f ./olddir/a.txt",
        "f ./olddir/sub/b.txt",
        "f ./same.txt",
        "original",
        "v2",
        "same",
    ]
    status, log = sandboxes.run_once(
        f"{LIST_TREE}; grep -o 'lowerdir=[^,]*' /proc/mounts | tr -cd ':' | wc -c"
    )
    assert status["status_reason"] == "no_changes", log
    lines = log.splitlines()
    assert lines[:-1] == [
        "f ./keep/edit.txt",
        "f ./keep/untouched.txt",
        "f ./olddir/sub/b.txt",
        "f ./same.txt",
        "original",
        "v2",
        "same2",
    ]
    assert int(lines[-1]) >= 1  # several lower layers


def test_concurrent_sandboxes_on_one_commit_all_commit(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, seeded: str
) -> None:
    ids = [sandboxes.create(command=["sh", "-c", f"cat same.txt > copy-{n}.txt"]) for n in range(6)]
    statuses = [sandboxes.wait(sid) for sid in ids]
    assert [s["status_reason"] for s in statuses] == ["committed"] * 6
    objects = list_objects(api, repo_path)
    assert all(read_object(api, repo_path, f"copy-{n}.txt") == b"same\n" for n in range(6))
    assert len(objects) == 6 + 6
