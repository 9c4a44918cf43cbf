"""Helpers for the connector and import tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

JOB_TIMEOUT = 120.0
MIB = 1024 * 1024

#: What the bucket holds: nested prefixes, an empty object, a 20 MiB object, unicode keys, and objects outside
#: the imported prefix.
BUCKET_OBJECTS: dict[str, bytes] = {
    "data/a.txt": b"alpha\n",
    "data/nested/deeper/b.csv": b"x,y\n1,2\n",
    "data/empty.bin": b"",
    "data/big.bin": hashlib.sha256(b"seed").digest() * (20 * MIB // 32),
    "data/ünïcødé/naïve résumé.txt": "ça marche\n".encode(),
    "data/日本語/ファイル.txt": "こんにちは".encode(),
    "other/outside.txt": b"not under the prefix",
    "top.txt": b"at the bucket root",
}


@dataclass(frozen=True)
class S3:
    """The running S3 server, its one identity and the fixture bucket."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = "us-east-1"

    def client(self, secret_access_key: str | None = None) -> S3Client:
        """A boto3 client for this server (with another secret when given)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def config(self, **overrides: str) -> dict[str, str]:
        """A connector config for this server."""
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            **overrides,
        }


class LogCapture(logging.Handler):
    """Keeps the text of every record it sees."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._guard:
            self.lines.append(text)

    def text(self) -> str:
        with self._guard:
            return "\n".join(self.lines)


def wait_for_job(
    api: httpx.Client, repo_path: str, job_id: str, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll ``GET R/import/{job_id}`` until the job is completed, failed or canceled; return it."""
    org, repo = repo_path.split("/")
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/organizations/{org}/repositories/{repo}/import/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in ("completed", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, f"import job still {job['status']} after {timeout}s"
        time.sleep(0.05)


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def commits_of(api: httpx.Client, repo_path: str) -> list[dict[str, Any]]:
    """The repository's log, newest first."""
    org, repo = repo_path.split("/")
    response = api.get(f"/organizations/{org}/repositories/{repo}/log", params={"amount": 1000})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def listing(api: httpx.Client, repo_path: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every object at the head under ``prefix``: path → Entry."""
    org, repo = repo_path.split("/")
    entries: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        params: dict[str, Any] = {"amount": 1000, "prefix": prefix}
        if after:
            params["after"] = after
        response = api.get(f"/organizations/{org}/repositories/{repo}/objects", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        for item in body["results"]:
            entries[item["path"]] = item["entry"]
        if not body["pagination"]["has_more"]:
            return entries
        after = body["pagination"]["next_offset"]


def read_hashes(api: httpx.Client, repo_path: str, prefix: str = "") -> dict[str, str]:
    """Every object at the head under ``prefix``: path → SHA-256 of its bytes, read over HTTP."""
    org, repo = repo_path.split("/")
    hashes = {}
    for path in listing(api, repo_path, prefix):
        digest = hashlib.sha256()
        with api.stream(
            "GET", f"/organizations/{org}/repositories/{repo}/object", params={"path": path}
        ) as r:
            assert r.status_code == 200, path
            for chunk in r.iter_bytes():
                digest.update(chunk)
        hashes[path] = digest.hexdigest()
    return hashes
