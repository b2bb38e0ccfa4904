"""A headless Chromium driven through chromedriver's W3C WebDriver HTTP API (Debian ``chromium`` and
``chromium-driver``; no browser download, no Selenium needed: the protocol is a handful of JSON calls)."""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    def __init__(self, chromium: str, chromedriver: str, profile_dir: Path, width: int = 1400) -> None:
        port = _free_port()
        self.driver = subprocess.Popen(
            [chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        self.session = ""
        try:
            self._wait_ready()
            options = {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",  # root in CI containers
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    f"--window-size={width},900",
                    f"--user-data-dir={profile_dir}",
                ],
            }
            caps = {"browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
        except BaseException:
            self.close()
            raise
        self.width = width

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.driver.poll() is not None:
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.05)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"webdriver {method} {path}: {response.status_code} {value}")
        return value

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def script(self, source: str, *args: Any) -> Any:
        """Run ``source`` (a function body) in the page and return its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": source, "args": list(args)})

    def console(self) -> list[dict[str, Any]]:
        """The browser's console entries since the last call (chromedriver's log endpoint)."""
        entries: list[dict[str, Any]] = self._call("POST", self._s("/se/log"), {"type": "browser"})
        return entries

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (the window is resized to the document's height first, at most 4000 px)."""
        self._call("POST", self._s("/window/rect"), {"width": self.width, "height": 400})
        height = int(self.script("return Math.ceil(document.body.getBoundingClientRect().height);"))
        self._call("POST", self._s("/window/rect"), {"width": self.width, "height": min(max(height + 140, 400), 4000)})
        data = self._call("GET", self._s("/screenshot"))
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            if self.session:
                self.http.delete(self._s(""))
        except httpx.HTTPError:
            pass
        finally:
            self.http.close()
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait(5)
