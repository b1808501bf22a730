"""Headless Chromium for tests: screenshot a local HTML file or URL, or dump its DOM."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("MODELOPS_CHROMIUM", "/usr/bin/chromium")
# Flags for an offline machine: no first-run UI, no background or component
# traffic (each would be a refused connection and a delay), a fresh profile.
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class BrowserError(RuntimeError):
    """Chromium is missing or did not produce what was asked."""


def chromium_available() -> bool:
    """Whether the Chromium binary tests/browser.py uses is installed."""
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def _url(target: str | Path) -> str:
    text = str(target)
    if "://" in text:
        return text
    path = Path(text).resolve()
    if not path.is_file():
        raise BrowserError(
            f"No HTML file at {path}.\nHint: pass an existing file or a URL."
        )
    return path.as_uri()


def _budget(wait_ms: int | None) -> list[str]:
    return [] if wait_ms is None else [f"--virtual-time-budget={int(wait_ms)}"]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    if not chromium_available():
        raise BrowserError(
            f"Chromium is not installed at {CHROMIUM}.\nHint: run `make browser` "
            "(installs Debian's chromium package), or set MODELOPS_CHROMIUM."
        )
    with tempfile.TemporaryDirectory(prefix="modelops-chromium-") as profile:
        command = [CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise BrowserError(
                f"Chromium did not finish within {timeout} s: {' '.join(command)}\n"
                "Hint: raise timeout= or check the page for endless loading."
            ) from error
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def screenshot(  # noqa: PLR0913 (the viewport, the wait and the timeout are all options)
    html_path_or_url: str | Path,
    png_path: str | Path,
    width: int = 1400,
    height: int = 2400,
    timeout: float = 60.0,
    *,
    wait_ms: int | None = None,
) -> Path:
    """Screenshot a local HTML file or a URL with headless Chromium.

    Args:
        html_path_or_url: An HTML file or a URL (``http://``, ``file://`` ...).
        png_path: Where to write the PNG.
        width: Viewport width in CSS pixels.
        height: Viewport height (the picture's height: the page is cut there).
        timeout: Seconds before giving up.
        wait_ms: Virtual time the page's scripts get before the picture
            (``--virtual-time-budget``), for pages drawn by JavaScript (kedro-viz).

    Returns:
        The PNG's path.

    Raises:
        BrowserError: Chromium is missing, timed out or wrote no picture.
    """
    url = _url(html_path_or_url)
    target = Path(png_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    process = _run(
        [
            *_budget(wait_ms),
            f"--window-size={width},{height}",
            f"--screenshot={target}",
            url,
        ],
        timeout,
    )
    if not target.is_file() or target.stat().st_size == 0:
        raise BrowserError(
            f"Chromium wrote no screenshot of {url} (exit {process.returncode}):\n"
            f"{process.stderr[-2000:]}\nHint: open the page in a browser to see why."
        )
    return target


def dump_dom(
    html_path_or_url: str | Path, timeout: float = 60.0, *, wait_ms: int | None = None
) -> str:
    """The DOM of a page as Chromium rendered it (``--dump-dom``), serialised as HTML.

    Args:
        html_path_or_url: An HTML file or a URL.
        timeout: Seconds before giving up.
        wait_ms: Virtual time the page's scripts get first (see ``screenshot``).

    Raises:
        BrowserError: Chromium is missing, timed out or printed nothing.
    """
    url = _url(html_path_or_url)
    process = _run([*_budget(wait_ms), "--dump-dom", url], timeout)
    if process.returncode != 0 or not process.stdout.strip():
        raise BrowserError(
            f"Chromium printed no DOM for {url} (exit {process.returncode}):\n"
            f"{process.stderr[-2000:]}\nHint: open the page in a browser to see why."
        )
    return process.stdout
