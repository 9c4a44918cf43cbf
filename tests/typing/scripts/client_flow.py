"""An explicit client: `Client.repositories`, organizations, and compute on the handles."""

from __future__ import annotations

from typing_extensions import assert_type

import tilde


def client_flow(endpoint_url: str, api_key: str) -> None:
    with tilde.Client(endpoint_url=endpoint_url, api_key=api_key) as client:
        repos = client.repositories("acme")
        repo = repos.create("data")
        assert_type(repo, tilde.Repository)
        assert_type(client.repository("acme/data"), tilde.Repository)
        patient = client.with_options(timeout=120, max_retries=5)
        assert_type(patient, tilde.Client)
        assert_type(patient.repositories("acme").get("data"), tilde.Repository)

        org = client.organizations.get("acme")
        handle = org.repositories.get("data")
        assert_type(handle, tilde.Repository)

        with handle.shell(image="python:3.12", network=True) as sh:
            process = sh.spawn(["python", "-c", "print(1)"])
            done = process.wait(timeout=30)
            print(done.exit_code)
        run = handle.execute("python -V", image="python:3.12", env={"A": "1"}, timeout=60, network=False)
        print(run.exit_code, run.stdout.text())

        sandbox = handle.sandboxes.create(image="python:3.12", command=["true"])
        print(sandbox.id, sandbox.sandbox_id)
        status = sandbox.wait(timeout=120)
        print(status.state)

        for trigger in handle.sandbox_triggers.list():
            print(trigger.name)
        handle.secrets.create("K", "v")
        job = handle.imports.create_from_repository("acme/other", "copied/")
        print(job.wait(timeout=60).status)


def passes_to_data_code(client: tilde.Client) -> tilde.data.Repository:
    """The composed client and handles are usable wherever the data layer's are expected (covariance)."""
    data_client: tilde.data.Client = client
    repositories: tilde.data.Repositories = client.repositories("acme")
    print(repositories)
    return data_client.repository("acme/data")
