"""Run by test_compute_published_client.py with the published tilde-sdk, in its own virtual environment.

Arguments: endpoint_url api_key org/repo. Prints one ``OK <step>`` line per checked step.
"""

import sys
import time

import tilde
from tilde.exceptions import CommandError

endpoint, key, repo_path = sys.argv[1:4]
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    repo = client.repository(repo_path)

    with repo.shell(image="python:3.12") as sh:
        result = sh.run("echo out; echo err >&2; exit 3")
        assert (result.stdout.read(), result.stderr.read(), result.exit_code) == (b"out\n", b"err\n", 3), (
            result
        )
        assert sh.run("cat", stdin=b"fed").stdout.read() == b"fed"
        assert sh.run("echo $X; pwd", env={"X": "y"}, cwd="/tmp").stdout.text() == "y\n/tmp\n"
        failure = None
        try:
            sh.run(["false"], check=True)
        except CommandError as error:
            failure = error
        assert failure is not None, "check=True did not raise"
        assert failure.result.exit_code == 1
        sh.run("echo shell > /sandbox/from-shell.txt", check=True)
    print("OK shell")

    deadline = time.monotonic() + 60
    while not any(s.status().is_committed for s in repo.sandboxes.list()):
        assert time.monotonic() < deadline, "the shell's changes were not committed"
        time.sleep(0.2)
    result = repo.execute("cat /sandbox/from-shell.txt; echo executed > /sandbox/from-execute.txt")
    assert result.exit_code == 0
    assert "shell" in result.stdout.text(), result.stdout.text()
    result = repo.execute("exit 4", check=False)
    assert result.exit_code == 4
    print("OK execute")

    triggers = repo.sandbox_triggers
    trigger = triggers.create(
        name="published",
        conditions=[{"type": "prefix", "prefix": "in/"}],
        sandbox_config={
            "image": "python:3.12",
            "command": ["sh", "-c", "ls /sandbox/in > /sandbox/seen.txt"],
        },
    )
    assert trigger.enabled
    renamed = trigger.update(name="renamed")
    assert (renamed.name, renamed.conditions[0].prefix) == ("renamed", "in/")
    assert not renamed.toggle(enabled=False).enabled
    assert trigger.refresh().name == "renamed"
    assert [t.id for t in triggers.list()] == [trigger.id]
    trigger.toggle(enabled=True)
    with repo.session() as session:
        session.objects.put("in/a.csv", b"1")
        session.commit("input")
    deadline = time.monotonic() + 60
    # A run is recorded "pending" first and becomes "created" once its sandbox exists.
    runs = list(trigger.runs.list())
    while not runs or runs[0].status == "pending":
        assert time.monotonic() < deadline, f"the trigger did not start its sandbox: {runs}"
        time.sleep(0.1)
        runs = list(trigger.runs.list())
    [run] = runs
    assert run.status == "created", run
    assert run.sandbox_id, run
    status = repo.sandboxes.get(run.sandbox_id).status()
    while not status.is_terminal:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
        status = repo.sandboxes.get(run.sandbox_id).status()
    assert status.is_committed, status
    triggers.delete(trigger.id)
    print("OK triggers")
