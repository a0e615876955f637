"""The web page in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, with the microphone faked from a WAV file.

Skips with one line where Chromium or Playwright is missing. Writes the screenshot of
``docs/serve.md`` (``docs/figures/serve.png``) when ``FOCALCODEC_SCREENSHOT=1``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support import CLIPS, REPO, speech

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser(playwright, wav: Path, profile: Path):
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )


def test_the_page_streams_the_microphone_live(server, tmp_path):
    if CHROMIUM is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    wav = tmp_path / "mic.wav"  # the fake microphone: real speech, looped by Chromium
    sf.write(wav, np.concatenate([speech(c) for c in CLIPS]), 16000, subtype="PCM_16")
    with sync_api.sync_playwright() as playwright:
        # Playwright's launch refuses --user-data-dir; a fresh profile is its default.
        try:
            browser = _browser(playwright, wav, tmp_path / "profile")
        except Exception:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[a for a in _args(wav) if not a.startswith("--user-data-dir")],
            )
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(server.http + "/")
        _until(page, "document.querySelector('#model').options.length > 0", 30)
        page.click("#start")
        _until(page, "window.fcStats.tokens >= 150", 60)
        _until(page, "window.fcStats.played > 24000", 30)
        stats = page.evaluate("window.fcStats")
        if os.environ.get("FOCALCODEC_SCREENSHOT"):
            page.wait_for_timeout(1500)
            page.screenshot(path=str(REPO / "docs" / "figures" / "serve.png"))
        page.click("#stop")
        # The upload box: encode a file, then offer its .fcz and decoded audio.
        page.set_input_files("#file", str(wav))
        page.click("#encode")
        _until(page, "document.querySelectorAll('#downloads a').length === 2", 60)
        names = page.evaluate(
            "Array.from(document.querySelectorAll('#downloads a'), a => a.download)"
        )
        upload = page.evaluate("document.querySelector('#upstatus').textContent")
        browser.close()
    assert not problems and not stats["errors"], (problems, stats["errors"])
    ready = stats["ready"]
    assert (
        ready["model"] == "causal_wavenext_50hz" and ready["sample_rate_input"] == 16000
    )
    # Tokens come at the model's rate: 50 per second of audio the page sent (the
    # blocks still on their way, at most a few, are not counted yet).
    sent_seconds = stats["sentSamples"] / 16000
    assert 50 * sent_seconds - 60 <= stats["tokens"] <= 50 * sent_seconds + 4
    assert stats["packets"] * 4 >= stats["tokens"] - 4
    assert stats["audioSamples"] > 0 and stats["played"] > 24000  # 1 s played
    assert len(stats["latencies"]) > 10 and stats["steps"] and stats["draws"] > 3
    assert names == ["mic.fcz", "mic.decoded.wav"] and "kbps" in upload


def _until(page, expression: str, seconds: float) -> None:
    """Poll ``expression`` in the page (through the debugger protocol, which the
    page's strict Content-Security-Policy rightly does not let scripts do)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            state = page.evaluate("JSON.stringify(window.fcStats)")
            raise AssertionError(f"{expression} never held; page state: {state}")
        time.sleep(0.1)


def _args(wav: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
    ]
