"""The README's screenshots of the page (``python -m dipjax.app``), taken with headless Chromium.

Starts the page's server on a free port with a fresh runs folder, opens the packaged image,
paints three strokes, starts an inpainting job, and saves the page mid-fit and finished:

    python experiments/app_screenshots.py --docs docs --iters 300

Needs the app extra, playwright and Debian's chromium (``apt-get install -y chromium``).
"""

import argparse
import pathlib
import shutil
import socket
import tempfile
import threading
import time

import uvicorn
from playwright.sync_api import sync_playwright

from dipjax.app.server import create_app

STROKES = (((60, 70), (120, 60)), ((150, 150), (200, 190)), ((40, 200), (100, 220)))


def serve(runs: pathlib.Path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runs), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}/"


def paint(page, size: int = 256, brush: int = 14) -> None:
    page.eval_on_selector(
        "#brush-size", f"e => {{ e.value = {brush}; e.dispatchEvent(new Event('input')) }}"
    )
    box = page.locator("#mask-canvas").bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"] / size, box["y"] + p[1] * box["width"] / size)
    for a, b in STROKES:
        page.mouse.move(*at(a))
        page.mouse.down()
        page.mouse.move(*at(b), steps=15)
        page.mouse.up()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=pathlib.Path, default=pathlib.Path("docs"))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    args.docs.mkdir(parents=True, exist_ok=True)
    server, url = serve(pathlib.Path(tempfile.mkdtemp(prefix="dipjax-shots-")))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_function("document.getElementById('preset').options.length > 0")
        page.click("#demo")
        page.select_option("#task", "inpaint")
        page.wait_for_selector("#mask-canvas:not([hidden])")
        paint(page)
        page.fill("#iters", str(args.iters))
        page.click("#start")
        page.wait_for_function(
            "document.getElementById('preview').naturalWidth > 0 && "
            "/iteration [0-9]{3}/.test(document.getElementById('stats').textContent)",
            timeout=600_000,
        )
        page.screenshot(path=str(args.docs / "app_running.png"), full_page=True)
        page.wait_for_selector("#result:not([hidden])", timeout=600_000)
        page.wait_for_function("document.getElementById('result-output').naturalWidth > 0")
        page.locator("#result").scroll_into_view_if_needed()
        page.screenshot(path=str(args.docs / "app_done.png"), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote {args.docs / 'app_running.png'} and {args.docs / 'app_done.png'}")


if __name__ == "__main__":
    main()
