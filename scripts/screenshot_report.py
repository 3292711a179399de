"""Screenshot an HTML report in a real headless browser, to look at it as a person would.

    python scripts/screenshot_report.py [REPORT] [--out PNG] [--width 1280] [--height 4000]

REPORT defaults to reports/evaluation.html, PNG to the report's path with ``.png``. Uses Chromium
(``chromium``, ``chromium-browser`` or ``google-chrome`` on the PATH; on Debian/Ubuntu
``apt-get install chromium``) with no network, no sandbox and a throw-away profile. Exits 2 with a
message when no browser is found, 1 when the browser fails or writes no picture.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(report: Path, out: Path, width: int, height: int, browser: str) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            report.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"{browser} exited {proc.returncode} without a screenshot: {proc.stderr[-1500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=Path("reports/evaluation.html"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} does not exist; run `dvc repro` (or `churn evaluate`) first.", file=sys.stderr)
        return 2
    browser = find_browser()
    if browser is None:
        print(
            f"error: no headless browser found (looked for {', '.join(BROWSERS)} on the PATH). "
            f"Install one, e.g. `apt-get install chromium` on Debian/Ubuntu, and run again.",
            file=sys.stderr,
        )
        return 2
    out = args.out or args.report.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        screenshot(args.report, out, args.width, args.height, browser)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size // 1024} KiB, {args.width}x{args.height}) from {args.report} via {browser}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
