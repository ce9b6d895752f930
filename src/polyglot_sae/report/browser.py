"""Headless Chromium for checking static pages: the DOM after their scripts ran, and screenshots.

Chromium runs as a plain subprocess with an argument list (no shell, so no quoting of paths or
URL fragments), in a throwaway profile folder (runs never share a cache or a profile lock), in a
session of its own so that a run past its timeout is killed with its renderer and GPU children.
``--dump-dom`` prints the DOM once the page's load event has fired, which is after deferred
scripts ran, so it shows what a reader would see.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from polyglot_sae.atomic_io import atomic_file
from polyglot_sae.errors import InputError

# Names the binary has on Debian/Ubuntu (chromium, chromium-browser) and with Google's package.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass(frozen=True)
class BrowserConfig:
    """Which Chromium to run and how long to wait for it."""

    # Path or command name; None tries CANDIDATES on PATH.
    binary: str | None = None
    # Seconds per run. A cold start takes 1-3 s; a hung renderer must not hang a test suite.
    timeout_s: float = 60.0
    # Viewport in pixels (width, height): screenshots are this size and pages lay out at it.
    window: tuple[int, int] = (1280, 900)


def find_chromium(binary: str | None = None) -> str | None:
    """The full path of the Chromium to run, or None when there is none."""
    for name in (binary,) if binary else CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def file_url(path: str | Path, fragment: str = "") -> str:
    """A file:// URL for a local page, with an optional ``#fragment`` (given without the '#')."""
    url = Path(path).resolve().as_uri()
    return f"{url}#{fragment}" if fragment else url


def dump_dom(url: str, config: BrowserConfig = BrowserConfig()) -> str:
    """The serialized DOM of `url` after its scripts ran."""
    out = _run(["--dump-dom", url], config)
    if not out.strip():
        raise RuntimeError(f"chromium printed no DOM for {url}")
    return out


def screenshot(url: str, out: str | Path, config: BrowserConfig = BrowserConfig()) -> Path:
    """A PNG of the first `config.window` pixels of `url`, written atomically to `out`."""
    out = Path(out)
    with atomic_file(out) as tmp:
        # Chromium picks the format from the extension and overwrites the (empty) temp file.
        png = tmp.with_suffix(".png")
        try:
            _run([f"--screenshot={png}", "--hide-scrollbars", url], config)
            if not png.exists() or png.stat().st_size == 0:
                raise RuntimeError(f"chromium wrote no screenshot of {url}")
            os.replace(png, tmp)
        finally:
            png.unlink(missing_ok=True)
    return out


def _run(args: list[str], config: BrowserConfig) -> str:
    binary = find_chromium(config.binary)
    if binary is None:
        wanted = config.binary or " / ".join(CANDIDATES)
        raise InputError("PATH", "chromium", f"no headless browser found ({wanted})",
                         "install Debian's `chromium` (apt-get install --no-install-recommends "
                         "chromium) or set BrowserConfig.binary")
    width, height = config.window
    with tempfile.TemporaryDirectory(prefix="polyglot-chromium-") as profile:
        cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
               # Containers often have a small /dev/shm; Chromium then crashes on large pages.
               "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
               "--disable-extensions", "--disable-background-networking", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            # The group is the one this call created (start_new_session): Chromium and its children.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(f"chromium took over {config.timeout_s:g} s: {' '.join(args)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {' '.join(args)}\n{stderr[-3000:]}")
    return stdout


def page_screenshots(pages_dir: str | Path, index_png: str | Path, feature_png: str | Path,
                     feature_id: int, config: BrowserConfig = BrowserConfig()) -> None:
    """Screenshots of a feature-pages folder's index and of one feature's page."""
    pages_dir = Path(pages_dir)
    page = pages_dir / "features" / f"{feature_id}.html"
    if not page.exists():
        raise InputError(pages_dir, "features", f"no page for feature {feature_id}",
                         "list the feature in pages.features or raise pages.top_n")
    screenshot(file_url(pages_dir / "index.html"), index_png, config)
    screenshot(file_url(page), feature_png, config)
