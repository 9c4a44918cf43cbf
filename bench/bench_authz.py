"""What policy evaluation costs a small authenticated GET on the local server.

Starts a `LocalServer` and measures requests per second of two small GETs (a repository, a 100-byte object)
as the organization's owner, whom the authorizer lets through without evaluating policies, and as a role
whose rights come from 20 attached policies: 10 attached directly and 10 through two levels of nested groups.
Each policy holds a few statements about the same actions (repository globs, path prefixes, a deny), so every
request looks at all of them. The two callers alternate in batches so drift on the machine hits both alike;
the table shows the ratio. The role's compiled policy set is cached until an IAM change, so the difference is
the decision itself (about 30 µs with these 20 policies against 4 µs for the owner, measured in process; the
rest of a request costs well over a millisecond, so expect a ratio near 1 within the machine's noise).

Run: ``hatch run python bench/bench_authz.py [--rounds N] [--batch N]``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tilde.server import LocalServer

POLICIES = 20


def _ok(response: httpx.Response) -> dict[str, object]:
    response.raise_for_status()
    return response.json() if response.content else {}


def setup(admin: httpx.Client) -> tuple[str, str]:
    """Create the organization, repository, object and the policy-laden role: ``(repo path, role key)``."""
    org = "bench"
    _ok(admin.post("/organizations", json={"name": org}))
    base = f"/organizations/{org}"
    _ok(admin.post(f"{base}/repositories", json={"name": "data", "visibility": "private"}))
    repo = f"{base}/repositories/data"
    session = _ok(admin.post(f"{repo}/sessions"))["session_id"]
    target = _ok(admin.put(f"{repo}/object", params={"session_id": session, "path": "small.bin"}))
    httpx.put(str(target["upload_url"]), content=b"x" * 100).raise_for_status()
    finalize = {"upload_token": target["upload_token"], "content_type": "application/octet-stream"}
    _ok(
        admin.post(
            f"{repo}/object/finalize", params={"session_id": session, "path": "small.bin"}, json=finalize
        )
    )
    _ok(admin.post(f"{repo}/sessions/{session}", json={"message": "seed"}))

    role = _ok(admin.post(f"{base}/roles", json={"name": "reader", "description": ""}))
    outer = _ok(admin.post(f"{base}/groups", json={"name": "outer"}))
    inner = _ok(admin.post(f"{base}/groups", json={"name": "inner"}))
    _ok(
        admin.post(
            f"{base}/groups/{outer['id']}/members", json={"subject_type": "group", "subject_id": inner["id"]}
        )
    )
    _ok(
        admin.post(
            f"{base}/groups/{inner['id']}/members", json={"subject_type": "role", "subject_id": role["id"]}
        )
    )
    for n in range(POLICIES):
        grants = "GetRepository()\nGetObject()\n" if n == POLICIES - 1 else ""
        text = (
            f'GetObject(repository="other-{n}-*", path="data/{n}/")\n'
            f'GetRepository(repository="other-{n}")\n'
            f'deny GetObject(repository="data", path="private/{n}/")\n'
            f'ListObjects(repository="data", path="logs/{n}/")\n' + grants
        )
        policy = _ok(admin.post(f"{base}/policies", json={"name": f"p{n:02d}", "policy_text": text}))
        holder = ("role", role["id"]) if n < POLICIES // 2 else ("group", (outer if n % 2 else inner)["id"])
        attach = {"principal_type": holder[0], "principal_id": holder[1]}
        _ok(admin.post(f"{base}/policies/{policy['id']}/attachments", json=attach))
    key = _ok(admin.post(f"{base}/roles/reader/auth/keys", json={"name": "bench"}))
    return repo, str(key["token"])


def rate(client: httpx.Client, method: str, url: str, params: dict[str, str], count: int) -> float:
    """Requests per second of ``count`` sequential requests."""
    started = time.perf_counter()
    for _ in range(count):
        response = client.request(method, url, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text}")
        response.read()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating batches per caller and request")
    parser.add_argument("--batch", type=int, default=200, help="requests per batch")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-authz-") as tmp, LocalServer(data_dir=Path(tmp)) as server:
        api = server.endpoint_url + "/api/v1"
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {server.api_key}"}) as admin:
            repo, role_key = setup(admin)
            with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {role_key}"}) as role:
                requests = [
                    ("GET repository", repo, {}),
                    ("GET 100-byte object", f"{repo}/object", {"path": "small.bin"}),
                ]
                rows = []
                for label, url, params in requests:
                    owner_rates: list[float] = []
                    role_rates: list[float] = []
                    for caller in (admin, role):  # warm connections and the authorizer's cache
                        rate(caller, "GET", url, params, 20)
                    for _ in range(args.rounds):
                        owner_rates.append(rate(admin, "GET", url, params, args.batch))
                        role_rates.append(rate(role, "GET", url, params, args.batch))
                    owner, policed = statistics.median(owner_rates), statistics.median(role_rates)
                    rows.append((label, f"{owner:,.0f}", f"{policed:,.0f}", f"{policed / owner:.3f}"))

    header = ("request (req/s, median)", "owner", f"role, {POLICIES} policies", "role/owner")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"authorization cost ({args.rounds} alternating batches of {args.batch} requests)")
    for row in [header, *rows]:
        print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))


if __name__ == "__main__":
    main()
