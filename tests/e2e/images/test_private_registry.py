"""Registry credentials from a repository's secret, and a private image's cache kept to those allowed it.

The registry is the real distribution registry behind htpasswd auth; the server has no registry credentials of
its own, so only the repository secret ``TILDE_REGISTRY_AUTH`` (Docker ``config.json`` form) can open it.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from oci_images import minimal_image
from oci_registry import run_registry
from run_support import Repo, image_server

pytestmark = pytest.mark.sandbox

PROBE = ["sh", "-c", 'cat /etc/image-release; echo "secret in env: ${TILDE_REGISTRY_AUTH:-no}"']


def _put_secret(repo: Repo, value: str) -> None:
    response = repo.api.put(f"{repo.base}/secrets/TILDE_REGISTRY_AUTH", json={"value": value})
    assert response.status_code == 200, response.text


def _failure(repo: Repo, reference: str) -> tuple[str, str]:
    status, _ = repo.run(image=reference, command=["true"])
    assert status["status"] == "failed", status
    return status["status_reason"], status.get("error_message", "")


def test_a_repository_secret_opens_a_private_registry_and_its_image_stays_private(tmp_path: Path) -> None:
    with run_registry(tmp_path / "registry", auth=True) as registry:
        assert registry.credentials is not None
        user, password = registry.credentials
        reference = f"{registry.host}/team/mini:1"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"{user}:{password}",
                f"oci:{minimal_image()}:latest",
                f"docker://{reference}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        good = json.dumps({"auths": {registry.host: {"auth": auth}}})
        with (
            image_server(tmp_path / "data", registry.host) as server,
            Repo.create(server) as owner,
            Repo.create(server) as other,
        ):
            # Without credentials the registry refuses the pull.
            reason, message = _failure(other, reference)
            assert reason == "image_pull_failed"
            assert "credentials" in message

            # The owner's repository secret opens it; the secret is never put into the sandbox's environment.
            _put_secret(owner, good)
            status, log = owner.run(image=reference, command=PROBE)
            assert (status["status"], status["exit_code"]) == ("done", 0), (status, log)
            assert log.splitlines()[-1] == "secret in env: no"
            assert log.splitlines()[0]  # the image's own /etc/image-release

            # The image is cached now, yet another repository without access still gets the registry's answer.
            reason, message = _failure(other, reference)
            assert reason == "image_pull_failed"
            assert "credentials" in message
            wrong = {"auths": {registry.host: {"username": user, "password": "wrong"}}}
            _put_secret(other, json.dumps(wrong))
            reason, message = _failure(other, reference)
            assert reason == "image_pull_failed"
            assert "refused" in message

            # A malformed secret is named, its value never shown.
            _put_secret(other, "not json at all")
            reason, message = _failure(other, reference)
            assert reason == "image_pull_failed"
            assert "secret TILDE_REGISTRY_AUTH is not JSON" in message
            assert "not json at all" not in message

            # Granted access, the cached image serves the other repository too, and the owner again.
            _put_secret(other, good)
            for repo in (other, owner):
                status, log = repo.run(image=reference, command=PROBE)
                assert (status["status"], status["exit_code"]) == ("done", 0), (status, log)
