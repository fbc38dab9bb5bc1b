"""The studio page of `soundforge serve` in headless Chromium (Playwright): the form built from the provider's
capabilities, waveforms and spectrograms compared with NumPy's own reading of the served WAV, the history with
licence badges and cost, A/B of two takes, stems with solo and mute, providers under the licence policy. The
screenshots in docs/images/ are taken here: `DOCS_SCREENSHOTS=docs/images pytest tests/serve/test_studio.py`."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is installed by scripts/test"
)

from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.licences.policy import LicensePolicy  # noqa: E402

from .test_app import CHROMIUM_ARGS, serving  # noqa: E402

FFT_SIZE = 1024  # the page's (static/studio.js)
#: Where the screenshots are kept (read when the module loads: each test runs in a home folder of its own).
SCREENSHOTS = Path(os.environ["DOCS_SCREENSHOTS"]).resolve() if os.environ.get("DOCS_SCREENSHOTS") else None


def expected_views(wav: bytes, columns: int) -> dict[str, Any]:
    """What the page should draw for a WAV file, read by libsndfile and NumPy: per column the lowest and highest
    sample over every channel, and the loudest bin and total power of a Hann-windowed frame of the channels' mean."""
    data, _ = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    channels = data.T
    n = channels.shape[1]
    peaks = []
    for i in range(columns):
        a = min(i * n // columns, n - 1)
        b = min(max(a + 1, (i + 1) * n // columns), n)
        peaks.append([float(channels[:, a:b].min()), float(channels[:, a:b].max())])
    mono = channels.astype(np.float64).sum(axis=0) / channels.shape[0]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_SIZE) / FFT_SIZE)
    bins, energy = [], []
    for i in range(columns):
        start = (i * (n - FFT_SIZE)) // (columns - 1) if n > FFT_SIZE else 0
        frame = np.zeros(FFT_SIZE)
        piece = mono[start : start + FFT_SIZE]
        frame[: piece.size] = piece * window[: piece.size]
        power = np.abs(np.fft.rfft(frame)) ** 2
        bins.append(int(np.argmax(power)))
        energy.append(float(power.sum()))
    return {"peaks": peaks, "peakBins": bins, "energy": energy}


def assert_drawn_as_numpy_reads(page: Any, http: httpx.Client, job_id: str) -> None:
    view = page.evaluate("id => studio.views[id]", job_id)
    wav = http.get(f"/v1/generations/{job_id}/audio?format=wav").content
    expected = expected_views(wav, view["columns"])
    assert view["columns"] == page.eval_on_selector("#waveform", "c => c.width") == 800
    assert view["peaks"] == expected["peaks"]  # the same samples, exactly: the page read the WAV as it is
    assert np.mean(np.array(view["peakBins"]) == np.array(expected["peakBins"])) > 0.99
    assert np.allclose(view["energy"], expected["energy"], rtol=1e-9, atol=1e-12)
    # And the canvases hold a drawing, not a blank: many colours in the spectrogram, the trace in the waveform.
    colours = page.eval_on_selector(
        "#spectrogram",
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();"
        " for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);"
        " return seen.size; }",
    )
    assert colours > 50
    traced = page.eval_on_selector(
        "#waveform",
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) n += d[i + 2] > 200; return n; }",
    )
    assert traced > 800  # at least one lit pixel per column


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """A full-page PNG, kept in $DOCS_SCREENSHOTS when it is set (docs/images holds the ones in the docs)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if SCREENSHOTS is not None:
        shutil.copy(shot, SCREENSHOTS / name)


def visible_fields(page: Any) -> dict[str, bool]:
    """Whether each request field of the form is shown (a field inside a hidden fieldset is not)."""
    fields: dict[str, bool] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('[data-name]')]"
        ".map(e => [e.dataset.name, !e.hidden && !e.closest('[hidden]')]))"
    )
    return fields


def wait_for_result(page: Any, count: int, timeout: float = 120_000) -> str:
    """Wait until the history lists `count` finished jobs and the newest is shown; its id."""
    try:
        page.wait_for_function(
            "n => (studio.history.length >= n && studio.shown === studio.history[0]"
            " && document.querySelector('#status').hidden) || !document.querySelector('#error').hidden",
            arg=count,
            timeout=timeout,
        )
    except playwright_api.TimeoutError:
        state = page.evaluate("[studio.history, studio.shown, document.querySelector('#status').hidden]")
        raise AssertionError(f"no result shown: {state}; error: {page.inner_text('#error')!r}") from None
    assert page.is_hidden("#error"), page.inner_text("#error")
    job_id: str = page.evaluate("studio.shown")
    return job_id


@contextmanager
def studio(
    tmp_path: Path, client: Client | None = None, **settings: Any
) -> Iterator[tuple[Any, httpx.Client, list[str]]]:
    """The page of a server around `client` (with `[serve]` `settings`), open in headless Chromium; the HTTP client
    beside it, and the page's uncaught errors as they come."""
    with (
        serving(tmp_path / "jobs", client=client, **settings) as (url, _),
        httpx.Client(base_url=url, timeout=60) as http,
        playwright_api.sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            yield page, http, errors
        finally:
            browser.close()


@pytest.fixture
def tiny_demucs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny random HTDemucs as adefossez/HTDemucs in a hub cache of this test's own (read at each call)."""
    pytest.importorskip("demucs")
    from soundforge.testing.demucs import build_demucs
    from soundforge.testing.hub import install_in_hub_cache

    hub = tmp_path / "hub"
    install_in_hub_cache(build_demucs(tmp_path / "export", "htdemucs", models=1, seed=7), "adefossez/HTDemucs", hub)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))  # for the serve engine's process too


def test_the_studio_draws_compares_and_mixes_takes_under_the_policy(tmp_path: Path, tiny_demucs: None) -> None:
    client = Client(Config.load(user_file=False), policy=LicensePolicy(deny=("musicgen",)))
    with studio(tmp_path, client) as (page, http, errors):
        page.wait_for_selector("#policy tr[data-provider=synth]")
        # Providers under the policy: refused ones listed with the policy's own reason, and not choosable.
        refused = page.inner_text("#policy tr[data-provider=musicgen]")
        clause = next(row for row in http.get("/v1/providers").json() if row["name"] == "musicgen")["policy_clause"]
        assert "refused: " + clause in refused and clause
        assert page.eval_on_selector("#provider option[value=musicgen]", "o => o.disabled")
        assert "refused by policy" in page.inner_text("#provider option[value=musicgen]")
        assert "CC0-1.0" in page.inner_text("#policy tr[data-provider=synth]")
        # The synth takes tempo, key and metre, not lyrics, a negative prompt or steps: the form says so.
        synth = next(row for row in http.get("/v1/providers").json() if row["name"] == "synth")
        shown = visible_fields(page)
        assert shown == {name: name in synth["capabilities"]["fields"] for name in shown}
        assert shown["bpm"] and shown["key"] and not shown["lyrics"] and not shown["steps"]

        # Take 1: streamed, with tempo and key from the form.
        page.fill("#prompt", "drum and bass")
        page.fill("#duration", "3")
        page.fill("#seed", "3")
        page.fill("#bpm", "174")
        page.select_option("#key", "A minor")
        page.click("#go")
        first = wait_for_result(page, 1)
        record = http.get(f"/v1/generations/{first}").json()
        assert record["stream"] is True and record["request"]["bpm"] == 174 and record["request"]["key"] == "A minor"
        assert record["request"]["seed"] == 3 and "lyrics" not in {k for k, v in record["request"].items() if v}
        assert_drawn_as_numpy_reads(page, http, first)
        assert page.eval_on_selector("#player", "a => a.src").startswith("blob:")

        # Take 2, with two stems: a stream cannot carry them, so the page submits a plain job.
        page.fill("#seed", "4")
        page.check("#stem-choices input[value=drums]")
        page.check("#stem-choices input[value=bass]")
        page.click("#go")
        second = wait_for_result(page, 2)
        record = http.get(f"/v1/generations/{second}").json()
        assert record["stream"] is False and record["request"]["stems"] == ["bass", "drums"]
        assert_drawn_as_numpy_reads(page, http, second)
        page.wait_for_selector("#stem-rows .stem[data-stem=bass]")
        assert page.evaluate("studio.stems.names") == ["bass", "drums"]  # as the separator lists them
        stem_licence = record["stems"][0]["license"]["id"]
        assert stem_licence in page.inner_text("#stem-rows .stem[data-stem=drums]")
        for stem in ("drums", "bass"):  # each stem's audio is the server's file, read exactly
            served, _ = sf.read(
                io.BytesIO(http.get(f"/v1/generations/{second}/audio?stem={stem}").content), dtype="float32"
            )
            loaded = page.evaluate(f"Array.from(studio.takes['{second}:{stem}'].channels[0])")
            assert np.array_equal(np.array(loaded, dtype=np.float32), served[:, 0])
        # Solo and mute set the stems' gains in the page's mixer.
        levels = "studio.stems.mixer.levels()"
        assert page.evaluate(levels) == [1, 1]
        page.click("#stem-rows .stem[data-stem=drums] button[data-action=solo]")
        assert page.evaluate(levels) == [0, 1]
        page.click("#stem-rows .stem[data-stem=drums] button[data-action=mute]")
        assert page.evaluate(levels) == [0, 0]
        page.click("#stem-rows .stem[data-stem=drums] button[data-action=solo]")
        assert page.evaluate(levels) == [1, 0]
        page.click("#stems-play")

        # History: newest first, each with its licence badge and what it cost.
        rows = page.query_selector_all("#history tbody tr")
        assert [row.get_attribute("data-id") for row in rows] == [second, first]
        for row in rows:
            text = row.inner_text()
            assert "CC0-1.0" in text and "succeeded" in text and "local, no charge" in text
        # A/B: the first take as A, the second as B, played together; the switch moves which one is heard.
        page.click(f"#history tr[data-id='{first}'] button[data-action=A]")
        page.click(f"#history tr[data-id='{second}'] button[data-action=B]")
        page.wait_for_function("studio.ab && studio.ab.A && studio.ab.B && studio.ab.mixer")
        assert page.evaluate("[studio.ab.A, studio.ab.B]") == [first, second]
        page.click("#ab-play")
        assert page.evaluate("studio.ab.mixer.levels()") == [1, 0] and page.inner_text("#ab-hearing") == "hearing A"
        page.click("#ab-switch")
        assert page.evaluate("studio.ab.mixer.levels()") == [0, 1] and page.inner_text("#ab-hearing") == "hearing B"
        assert "seed 3" in page.inner_text("#ab-a") and "seed 4" in page.inner_text("#ab-b")
        assert page.evaluate("audio.state") == "running"
        # Opening an older take from the history shows it again, drawn the same.
        page.click(f"#history tr[data-id='{first}'] button[data-action=Open]")
        page.wait_for_function("id => studio.shown === id", arg=first)
        assert page.is_hidden("#stems-mixer")
        page.click(f"#history tr[data-id='{second}'] button[data-action=Open]")
        page.wait_for_selector("#stem-rows .stem[data-stem=drums]")
        assert errors == []
        screenshot(page, tmp_path, "studio.png")


def test_a_refusal_shows_the_typed_error_and_keeps_the_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stems without the separator's weights: the server's reason and hint on the page, nothing in the history."""
    pytest.importorskip("demucs")
    # An empty hub cache of its own (read at each call): other tests install a tiny Demucs in the session's cache.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "no-hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hub"))
    with studio(tmp_path) as (page, _, errors):
        page.wait_for_selector("#policy tr[data-provider=demucs]")
        assert "the separator is unavailable" in page.inner_text("#stems-note")
        page.check("#stem-choices input[value=vocals]")
        page.click("#go")
        page.wait_for_selector("#error", state="visible")
        assert "model_not_available" in page.inner_text("#error") or "HTDemucs" in page.inner_text("#error")
        assert page.evaluate("studio.history.length") == 0
        assert page.input_value("#prompt")  # the form keeps what was typed
        assert errors == []


def test_the_form_follows_the_capabilities_and_sings_the_librarys_song(tmp_path: Path) -> None:
    """A tiny random ACE-Step 1.5: lyrics with sections, tempo, key, metre and steps from the form reach the job as
    fields of the request, and the song is the library's, sample for sample at 16 bits."""
    pytest.importorskip("diffusers")
    from soundforge.audio.pcm16 import quantize
    from soundforge.testing.ace_step import build_ace_step

    folder = str(build_ace_step(tmp_path / "tiny"))
    config = Config.load(user_file=False, providers={"ace-step": {"model": folder}})
    client = Client(config)
    with studio(tmp_path, client) as (page, http, errors):
        page.wait_for_selector("#provider option[value=ace-step]:not([disabled])", state="attached")
        rows = {row["name"]: row for row in http.get("/v1/providers").json()}
        for name in ("synth", "ace-step"):
            page.select_option("#provider", name)
            fields = rows[name]["capabilities"]["fields"]
            shown = visible_fields(page)
            assert shown == {field: field in fields for field in shown}, name
        caps = rows["ace-step"]["capabilities"]
        assert page.input_value("#duration") == str(int(caps["min_duration"]))  # raised to the model's least
        page.click("#sections button[data-section=verse]")
        page.keyboard.type("neon lights")
        page.click("#sections button[data-section=chorus]")
        page.keyboard.type("la la la")
        page.fill("#bpm", "120")
        page.select_option("#key", "D minor")
        page.select_option("#time_signature", "3/4")
        page.fill("#steps", "2")
        page.fill("#seed", "5")
        page.fill("#prompt", "synth pop")
        screenshot(page, tmp_path, "studio-song.png")
        page.click("#go")
        job = wait_for_result(page, 1, timeout=300_000)
        request = http.get(f"/v1/generations/{job}").json()["request"]
        assert request["lyrics"] == "[verse]\nneon lights\n\n[chorus]\nla la la"
        assert (request["bpm"], request["key"], request["time_signature"]) == (120, "D minor", "3/4")
        assert (request["steps"], request["seed"], request["duration"]) == (2, 5, caps["min_duration"])
        made = {k: v for k, v in request.items() if v is not None and v != {} and k != "prompt"}
        library = client.generate(request["prompt"], provider="ace-step", **made)
        served, _ = sf.read(io.BytesIO(http.get(f"/v1/generations/{job}/audio").content), dtype="int16")
        assert np.array_equal(served.T, quantize(library.audio))
        assert_drawn_as_numpy_reads(page, http, job)  # at 800 Hz: played 4x held, drawn as it is
        assert errors == []


def test_cancelling_a_job_on_the_page_is_not_an_error(tmp_path: Path) -> None:
    """A job the user cancels ends as "cancelled" in the status line and the history; no red error box."""
    import threading

    from soundforge.testing import FunctionBackend

    started = threading.Event()

    def slow(request: Any, context: Any) -> np.ndarray:
        started.set()
        for step in range(10_000):  # until the cancel: progress raises once the job is cancelled
            context.progress("render", step, 10_000)
            threading.Event().wait(0.01)
        return np.zeros(8000, dtype=np.float32)

    backend = FunctionBackend(slow, name="slow", sample_rate=8000, license="CC0-1.0")
    client = Client(Config.load(user_file=False), backends={"slow": backend})
    with studio(tmp_path, client, engine="inline") as (page, http, errors):
        page.wait_for_selector("#provider option[value=slow]:not([disabled])", state="attached")
        page.select_option("#provider", "slow")
        page.fill("#duration", "1")
        page.click("#go")
        assert started.wait(60)
        page.click("#cancel")
        page.wait_for_function("document.querySelector('#phase').textContent === 'cancelled'", timeout=60_000)
        assert page.is_hidden("#error") and page.is_visible("#status") and page.is_hidden("#cancel")
        page.wait_for_selector("#history tbody tr td:has-text('cancelled')")
        job = http.get("/v1/generations").json()["jobs"][0]
        assert job["status"] == "cancelled"
        assert errors == []


def test_behind_a_token_the_page_asks_for_it_and_sends_it_as_a_bearer_header(tmp_path: Path) -> None:
    """The page and its script load without the token; the API answers 401 until the token is typed, then the page
    sends it in the Authorization header (never in a URL) for providers, history and jobs."""
    with studio(tmp_path, token="s3cret-token") as (page, _, errors):
        page.wait_for_selector("#error", state="visible")
        assert "unauthorized" in page.inner_text("#error")
        sent: list[tuple[str, str | None]] = []
        page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
        page.fill("#token", "s3cret-token")
        page.dispatch_event("#token", "change")
        page.wait_for_selector("#policy tr[data-provider=synth]")
        assert page.is_hidden("#error")  # the refusal went with the missing token
        page.fill("#duration", "1")
        page.click("#go")
        wait_for_result(page, 1)
        api = [(url, auth) for url, auth in sent if "/v1/" in url]
        assert api and all(auth == "Bearer s3cret-token" for _, auth in api)
        assert all("s3cret" not in url for url, _ in sent)
        assert errors == []
