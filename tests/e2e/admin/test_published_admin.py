"""The published client (tilde-sdk 0.7.9 from the package registry) runs the README's admin sections.

The script runs in the client's own virtual environment (see ``published_python``) against this server and
a real S3 server, and prints one ``OK <section>`` line per README section that passed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from weed_s3 import S3Server

    from tilde.server import LocalServer

SCRIPT = Path(__file__).with_name("published_admin_script.py")
SECTIONS = [
    "organizations",
    "organizations as a user",
    "members",
    "groups",
    "policies",
    "roles and agents",
    "api keys",
    "secrets",
    "connectors and imports",
    "cross-repository import",
    "agent approval workflow",
]
#: The bucket the connector section imports from (text values, so they travel as JSON).
OBJECTS = {
    "datasets/train.csv": "x,y\n1,2\n",
    "datasets/nested/notes.txt": "imported\n",
    "elsewhere/skip.txt": "outside the prefix\n",
}


@pytest.mark.slow
def test_published_client_runs_the_readme_admin_sections(
    published_python: Path, server: LocalServer, s3_server: S3Server, user_key: str
) -> None:
    bucket = s3_server.new_bucket({key: text.encode() for key, text in OBJECTS.items()})
    s3 = {
        "endpoint_url": s3_server.endpoint_url,
        "access_key_id": s3_server.access_key_id,
        "secret_access_key": s3_server.secret_access_key,
        "region": s3_server.region,
        "bucket": bucket,
        "objects": OBJECTS,
    }
    result = subprocess.run(
        [str(published_python), str(SCRIPT), server.endpoint_url, server.api_key, json.dumps(s3), user_key],
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
    assert result.stdout.splitlines() == [f"OK {name}" for name in SECTIONS], result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
