"""Headless Chromium, driven over the DevTools protocol (aiohttp's websocket client: MLflow
already depends on aiohttp, so no browser driver or extra package is needed)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.processes import stop_group

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,1500", "--remote-debugging-port=0",
)

# Type into the page's search box the way React notices (its own value setter + input event).
SEARCH_JS = """((placeholders, text) => {
  const box = [...document.querySelectorAll('input')].find(e => placeholders.includes(e.placeholder));
  if (!box) return false;
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(box, text);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})(%s, %s)"""
# The UI opens its assistant side panel on first visit; close it so the run fills the shot.
CLOSE_PANELS_JS = """[...document.querySelectorAll('button[aria-label="Close"]')].map(b => b.click()).length"""


def chromium() -> str | None:
    for path in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class Shot:
    """One page to open, wait for, prepare and screenshot."""

    url: str
    png: Path
    wait_for_text: tuple[str, ...] = ()
    wait_for_js: str = "true"
    search: str | None = None  # typed into the page's metric search box once ready
    settle_js: str = "true"  # waited for after the search, before the screenshot


async def _screenshots(exe: str, shots: list[Shot], timeout: float) -> list[str]:
    import aiohttp

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and port_file.read_text().strip()):
                assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
                await asyncio.sleep(0.1)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                page = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with http.ws_connect(page, max_msg_size=0) as ws:
                    return [await _shoot(ws, shot, timeout) for shot in shots]
        finally:
            stop_group(proc)


_CDP_IDS = itertools.count(1)


async def _shoot(ws: Any, shot: Shot, timeout: float) -> str:
    async def call(method: str, **params: Any) -> dict:
        my_id = next(_CDP_IDS)
        await ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await ws.receive_json()
            if msg.get("id") == my_id:
                assert "error" not in msg, msg["error"]
                return msg["result"]

    async def js(expression: str) -> Any:
        result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def wait(expression: str, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await js(expression):
            if time.monotonic() > deadline:
                text = await js("document.body ? document.body.innerText : ''")
                raise AssertionError(f"{shot.url}: {what} never happened in {timeout:.0f}s; page text: {text[:1500]!r}")
            await asyncio.sleep(0.25)

    await call("Page.navigate", url=shot.url)
    texts = json.dumps(list(shot.wait_for_text))
    await wait(f"document.body && {texts}.every(t => document.body.innerText.includes(t))",
               f"showing {list(shot.wait_for_text)}")
    await wait(shot.wait_for_js, shot.wait_for_js)
    await js(CLOSE_PANELS_JS)
    if shot.search is not None:
        placeholders = json.dumps(["Search metrics", "Search metric charts"])
        assert await js(SEARCH_JS % (placeholders, json.dumps(shot.search))), f"{shot.url}: no metric search box"
    await wait(shot.settle_js, shot.settle_js)
    await asyncio.sleep(1.0)  # let the last layout and chart transitions finish
    text = await js("document.body.innerText")
    png = await call("Page.captureScreenshot", format="png")
    shot.png.write_bytes(base64.b64decode(png["data"]))
    return str(text)


def screenshots(shots: list[Shot], timeout: float = 90.0) -> list[str]:
    """Open each page in one headless Chromium, wait until it shows what it must, screenshot
    it. Returns each page's visible text."""
    exe = chromium()
    assert exe, "no Chromium executable"
    return asyncio.run(_screenshots(exe, shots, timeout))
