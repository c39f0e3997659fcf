"""Screenshot an HTML report for the gallery: python docs/gallery/screenshot.py REPORT.html OUT.png [WIDTH]

Opens the file in Debian's Chromium (``apt-get install chromium``) through Playwright's Python
package (the dev extra; never ``playwright install``), with the flags the closed network needs,
and fails if the page logs an error or requests anything but itself (as
``tests/test_report_browser.py`` checks).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    from playwright.sync_api import sync_playwright

    src, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    problems: list[str] = []
    requests: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=browser, args=ARGS, headless=True,
                                                        viewport={"width": width, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        context.on("request", lambda r: requests.append(r.url))
        page.goto(src.as_uri(), wait_until="load")
        page.screenshot(path=str(out), full_page=True)
        context.close()
    if problems or requests != [src.as_uri()]:
        print(f"error: {problems} {requests}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
