"""A real headless Chromium driven over the DevTools protocol (websocket-client), for the board and report tests.
Debian's `chromium` package; .ci/run installs it. Skips, saying so, where it is missing, unless
TOWERLAB_REQUIRE_BROWSER=1 (CI), where a missing browser fails."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from helpers import missing


class Browser:
    def __init__(self, profile: Path):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            missing("no chromium here (apt-get install chromium)", "TOWERLAB_REQUIRE_BROWSER")
        import websocket

        port = None
        for attempt in range(2):  # one more launch: under a loaded suite Chromium once never wrote its port
            port = self._launch(exe, profile, attempt)
            if port:
                break
        if not port:
            log = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"Chromium wrote no DevTools port in two launches (exit {self.proc.poll()}):\n{log}")
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.call("Page.enable")

    def _launch(self, exe: str, profile: Path, attempt: int) -> int | None:
        """Start Chromium on profile; its DevTools port, or None if it exited or wrote none within 60 s."""
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        with open(profile.parent / "chromium.log", "a") as log:
            log.write(f"-- launch {attempt + 1}\n")
            log.flush()
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--remote-debugging-port=0",
                    f"--user-data-dir={profile}",
                    "--window-size=1280,900",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.time() + 60
        # Chromium creates the file, then writes the port into it: wait for the content, not the name
        while time.time() < deadline and self.proc.poll() is None:
            text = port_file.read_text() if port_file.is_file() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        return None

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError as e:  # asked while the page navigates (a click on a link): ask the new page again
                if "navigated or closed" not in str(e) and "context" not in str(e).lower():
                    raise
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def screenshot(self, path: Path) -> None:
        height = self.eval("document.documentElement.scrollHeight")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(int(height), 4000),
            deviceScaleFactor=1,
            mobile=False,
        )
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()


BROKEN_IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
