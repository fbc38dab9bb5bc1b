"""serve with several bearer tokens, each with a budget and a rate limit (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi")

from soundforge.client import Client
from soundforge.config import Config, ServeConfig, ServeToken
from soundforge.serve.settings import ServeSettings

from ..fakes import KEY
from ..helpers import ingress_only
from .test_app import serving, wait


@ingress_only
def test_named_tokens_have_their_own_budget_and_rate(stability, downloads, tmp_path, server: str) -> None:
    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads)}
    client = Client(Config.load(user_file=False, providers={"stability": settings}))
    tokens = {"team-a-secret": ("team-a", 0.45, None), "team-b-secret": ("team-b", None, 2)}
    body = {"request": {"prompt": "x", "duration": 2}, "provider": "stability"}
    with serving(
        tmp_path / "store", client=client, token="main-secret", tokens=tokens, engine="inline", server=server
    ) as (url, _):

        def as_(token: str) -> httpx.Client:
            return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        a, b, main = as_("team-a-secret"), as_("team-b-secret"), as_("main-secret")
        first = [a.post("/v1/generations", json=body) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]  # 0.40 of 0.45 held
        over = a.post("/v1/generations", json=body)
        assert over.status_code == 402 and over.json()["error"]["code"] == "budget_exceeded"
        assert "0.0500 USD left" in over.json()["error"]["message"]
        for answer in first:
            assert wait(a, answer.json()["id"])["status"] == "succeeded"
        assert a.post("/v1/generations", json=body).status_code == 402  # spent, not only held
        assert [b.post("/v1/generations", json=body).status_code for _ in range(2)] == [202, 202]
        limited = b.post("/v1/generations", json=body)
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
        assert main.post("/v1/generations", json=body).status_code == 202  # the main token has no limits
        assert as_("team-c-secret").post("/v1/generations", json=body).status_code == 401
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert "team-a-secret" not in over.text


def test_tokens_come_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TEAM_A_TOKEN", "from-the-env")
    serve = ServeConfig(tokens={"team-a": ServeToken(token_env="TEAM_A_TOKEN", budget_usd=5, requests_per_minute=10)})
    resolved = ServeSettings.from_config(serve, store=tmp_path)
    assert resolved.tokens == {"from-the-env": ("team-a", 5, 10)} and "from-the-env" not in repr(resolved)
    empty = ServeConfig(tokens={"team-b": ServeToken(token_env="UNSET_TOKEN")})
    assert ServeSettings.from_config(empty, store=tmp_path).tokens == {}  # an unset variable adds no token


def test_metrics_for_prometheus(tmp_path) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    with serving(tmp_path / "store", token="main-secret", engine="inline") as (url, _):
        http = httpx.Client(base_url=url, headers={"Authorization": "Bearer main-secret"}, timeout=30)
        for seed in (1, 2):
            job = http.post(
                "/v1/generations", json={"request": {"prompt": "x", "duration": 1, "seed": seed}, "provider": "synth"}
            )
            assert wait(http, job.json()["id"])["status"] == "succeeded"
        assert httpx.get(f"{url}/metrics").status_code == 401  # behind the token like everything but /healthz
        answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert samples[("soundforge_jobs_total", (("provider", "synth"), ("state", "succeeded")))] == 2
    assert samples[("soundforge_generation_seconds_count", (("provider", "synth"),))] == 2
    assert samples[("soundforge_queue_depth", ())] == 0 and samples[("soundforge_jobs_running", ())] == 0
    assert samples[("soundforge_cost_usd_total", (("provider", "synth"),))] == 0


def test_a_token_s_spending_survives_a_restart(stability, downloads, tmp_path) -> None:
    """What a named token spent is kept in the job index: a server started again on the same store does not give
    the token its whole budget back."""
    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads)}
    tokens = {"team-a-secret": ("team-a", 0.45, None)}
    body = {"request": {"prompt": "x", "duration": 2}, "provider": "stability"}

    def client() -> Client:
        return Client(Config.load(user_file=False, providers={"stability": settings}))

    def as_a(url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"Authorization": "Bearer team-a-secret"}, timeout=30)

    with serving(tmp_path / "store", client=client(), tokens=tokens, engine="inline") as (url, _), as_a(url) as a:
        jobs = [a.post("/v1/generations", json=body).json()["id"] for _ in range(2)]
        assert [wait(a, job)["status"] for job in jobs] == ["succeeded", "succeeded"]  # 0.40 of 0.45 spent
    with serving(tmp_path / "store", client=client(), tokens=tokens, engine="inline") as (url, _), as_a(url) as a:
        again = a.post("/v1/generations", json=body)
        assert again.status_code == 402 and "0.0500 USD left" in again.json()["error"]["message"]


def test_the_history_lists_a_token_s_own_jobs_newest_first(tmp_path) -> None:
    """`GET /v1/generations`: a named token sees the jobs it submitted (never another team's prompts); the main
    token, and a server without named tokens, every job; records as they stand (licence and cost once finished)."""
    tokens = {"team-a-secret": ("team-a", None, None), "team-b-secret": ("team-b", None, None)}
    body = {"request": {"prompt": "x", "duration": 1}, "provider": "synth"}
    with serving(tmp_path / "store", token="main-secret", tokens=tokens, engine="inline") as (url, _):

        def as_(token: str) -> httpx.Client:
            return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        a, b, main = as_("team-a-secret"), as_("team-b-secret"), as_("main-secret")
        made = {}
        for who, http in (("a1", a), ("b1", b), ("a2", a), ("main", main)):
            answer = http.post("/v1/generations", json={**body, "request": {**body["request"], "prompt": who}})
            made[who] = answer.json()["id"]
            assert wait(http, made[who])["status"] == "succeeded"
        listed = a.get("/v1/generations").json()["jobs"]
        assert [job["id"] for job in listed] == [made["a2"], made["a1"]]
        assert listed[0]["request"]["prompt"] == "a2" and listed[0]["license"]["id"] == "CC0-1.0"
        assert "local, no charge" in listed[0]["cost_text"] and listed[0]["token"] == "team-a"
        assert [job["id"] for job in b.get("/v1/generations").json()["jobs"]] == [made["b1"]]
        everything = main.get("/v1/generations", params={"limit": 3}).json()["jobs"]
        assert [job["id"] for job in everything] == [made["main"], made["a2"], made["b1"]]
        assert a.get("/v1/generations", params={"limit": 0}).status_code == 422
        assert httpx.get(f"{url}/v1/generations").status_code == 401
        assert "team-a-secret" not in str(everything)
    with serving(tmp_path / "open") as (url, _), httpx.Client(base_url=url, timeout=30) as anyone:
        job = anyone.post("/v1/generations", json=body).json()["id"]
        assert wait(anyone, job)["status"] == "succeeded"
        assert [entry["id"] for entry in anyone.get("/v1/generations").json()["jobs"]] == [job]
