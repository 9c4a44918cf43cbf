"""Nothing is committed twice: a commit whose answer is lost is retried with its Idempotency-Key."""

from __future__ import annotations

import httpx
from fault_proxy import PASS, Decision, FaultProxy
from faults_helpers import latest

from tilde.data import Repository
from tilde.server import LocalServer


def test_a_commit_whose_answer_is_lost_is_retried_and_applied_once(
    proxy: FaultProxy, faulty_repo: Repository
) -> None:
    lost: list[str] = []

    def plan(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Decision:
        # The server commits; the client's connection is reset before it reads the answer.
        if method == "POST" and "/sessions/" in path and not lost:
            lost.append(headers.get("idempotency-key", ""))
            return Decision("lose_response")
        return PASS

    proxy.plan = plan
    with faulty_repo.session() as session:
        session.objects.put("once.txt", b"exactly once")
        commit_id = session.commit("applied once")
    commits = proxy.matching(lambda record: record.method == "POST" and "/sessions/" in record.path)
    assert [record.decision.kind for record in commits] == ["lose_response", "pass"]
    # Both tries carried the same key, and the answer to the second is the commit the first made.
    assert lost[0]
    assert commits[1].headers.get("idempotency-key") == lost[0]
    assert [commit.id for commit in faulty_repo.commits.list()] == [commit_id]
    assert latest(faulty_repo).get("once.txt").read() == b"exactly once"


def test_the_server_answers_a_repeated_key_with_the_first_outcome(
    behind_proxy: tuple[FaultProxy, LocalServer], faulty_repo: Repository
) -> None:
    server = behind_proxy[1]
    base = f"{server.endpoint_url}/api/v1/organizations/{faulty_repo.org}/repositories/{faulty_repo.name}"
    with httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"}) as http:
        session_id = http.post(f"{base}/sessions").json()["session_id"]
        staged = http.put(f"{base}/object", params={"session_id": session_id, "path": "a.txt"}).json()
        http.put(staged["upload_url"], content=b"a").raise_for_status()
        http.post(
            f"{base}/object/finalize",
            params={"session_id": session_id, "path": "a.txt"},
            json={"upload_token": staged["upload_token"], "content_type": "text/plain"},
        ).raise_for_status()
        commit = f"{base}/sessions/{session_id}"
        first = http.post(commit, json={"message": "m"}, headers={"Idempotency-Key": "key-1"})
        assert first.status_code == 200, first.text
        assert first.json()["commit_id"]
        again = http.post(commit, json={"message": "m"}, headers={"Idempotency-Key": "key-1"})
        assert again.status_code == 200, again.text
        assert again.json()["commit_id"] == first.json()["commit_id"]
        # Another key, or none: the session is already committed.
        for headers in ({"Idempotency-Key": "key-2"}, {}):
            other = http.post(commit, json={"message": "m"}, headers=headers)
            assert other.status_code == 409, other.text
        bad = http.post(commit, json={"message": "m"}, headers={"Idempotency-Key": "x" * 256})
        assert bad.status_code == 400
        assert set(bad.json()) == {"message", "code", "request_id"}
        log = http.get(f"{base}/log", params={"amount": 10}).json()["results"]
        assert [entry["id"] for entry in log] == [first.json()["commit_id"]]
