#!/usr/bin/env python3
"""Look at a report as a reader does: render report.html in headless Chromium to a PNG of the whole page.

    python scripts/report_screenshot.py reports/quick/report.html /tmp/report.png [--width 1280]
        [--parts DIR]   # also cut the page into screen-high PNGs (easier to view one at a time)

A development tool, not a test dependency: without Chromium (Debian: ``apt-get install chromium``) it says so and
exits 0. The page is self-contained, so Chromium needs no network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_HEIGHT = 16000  # Chromium's largest screenshot; the window is this tall and the blank rest is trimmed


def browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def screenshot(page: Path, out: Path, width: int = 1280, height: int = MAX_HEIGHT) -> Path:
    """Render ``page`` at ``width`` CSS pixels into ``out``, trimmed below the page's last non-white row."""
    chromium = browser()
    if chromium is None:
        raise FileNotFoundError("no chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    image = Image.open(out).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box:
        image.crop((0, 0, image.width, min(image.height, box[3] + 24))).save(out, optimize=True)
    return out


def cut(shot: Path, directory: Path, height: int = 1400) -> list[Path]:
    """The screenshot in consecutive screen-high parts: part-01.png, part-02.png, …"""
    directory.mkdir(parents=True, exist_ok=True)
    image = Image.open(shot)
    parts = []
    for k, top in enumerate(range(0, image.height, height)):
        path = directory / f"part-{k + 1:02d}.png"
        image.crop((0, top, image.width, min(image.height, top + height))).save(path, optimize=True)
        parts.append(path)
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--parts", type=Path, help="also write screen-high parts of the page into this folder")
    args = parser.parse_args()
    if not args.page.is_file():
        print(f"error: no such page: {args.page}", file=sys.stderr)
        return 2
    if browser() is None:
        print("skipped: no Chromium found (one of: " + ", ".join(BROWSERS) + "); on Debian: apt-get install "
              "chromium", file=sys.stderr)
        return 0
    shot = screenshot(args.page, args.out, args.width)
    print(f"wrote {shot} ({Image.open(shot).size[0]}×{Image.open(shot).size[1]} px)")
    for part in cut(shot, args.parts) if args.parts else []:
        print(f"wrote {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
