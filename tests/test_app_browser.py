"""The page in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium; Playwright
cannot download its own browser here) against the server running in a thread."""

import shutil
import socket
import threading
import time

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the app extra (uvicorn) is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

import uvicorn  # noqa: E402

from dipjax.app.server import create_app  # noqa: E402

SIZE, BRUSH = 64, 8
STROKE = ((12, 28), (52, 28))  # image pixels


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, runs folder) of a server on a free port, stopped after the module."""
    runs = tmp_path_factory.mktemp("runs")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runs), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", runs
    server.should_exit = True
    thread.join(60)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, served):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served[0])
    page.wait_for_function("document.getElementById('preset').options.length > 0")
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray((smooth_image(SIZE, SIZE) * 255).astype(np.uint8)).save(path)
    return path


def stroke_region(size=SIZE, radius=BRUSH / 2):
    """Distance of each pixel centre from the stroke's segment, minus the brush radius."""
    (x0, y0), (x1, y1) = STROKE
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    t = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + 1e-9), 0, 1)
    return np.hypot(xx - (x0 + t * (x1 - x0)), yy - (y0 + t * (y1 - y0))) - radius


def paint(page):
    page.eval_on_selector(
        "#brush-size", f"e => {{ e.value = {BRUSH}; e.dispatchEvent(new Event('input')) }}"
    )
    box = page.locator("#mask-canvas").bounding_box()
    scale = box["width"] / SIZE
    at = lambda p: (box["x"] + p[0] * scale, box["y"] + p[1] * scale)
    page.mouse.move(*at(STROKE[0]))
    page.mouse.down()
    page.mouse.move(*at(STROKE[1]), steps=12)
    page.mouse.up()


@pytest.mark.slow
def test_paint_a_mask_and_inpaint_it(page, served, photo):
    page.set_input_files("#file", str(photo))
    page.select_option("#task", "inpaint")
    page.wait_for_selector("#mask-canvas:not([hidden])")
    paint(page)
    page.fill("#iters", "10")
    page.click("#start")
    page.wait_for_selector("#result:not([hidden])", timeout=180_000)
    page.wait_for_function("document.getElementById('result-output').naturalWidth > 0")
    assert page.locator("#status").text_content() == "done"
    stats = page.locator("#stats").text_content()
    assert "PSNR vs input" in stats and "vs clean" not in stats, stats  # no clean image here
    links = page.locator("#downloads a").all_text_contents()
    assert "download output" in links and "download summary.json" in links

    folder = served[1] / page.locator("#job-id").text_content()
    mask = np.asarray(Image.open(folder / "inputs" / "mask.png").convert("L"))
    assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) == {0, 255}
    d = stroke_region()
    sure = np.abs(d) > 1  # antialiasing decides the pixels on the brush's edge
    assert ((mask == 0) == (d < 0))[sure].all()
    hole = mask == 0
    original = np.asarray(Image.open(photo), np.float32) / 255
    output = np.asarray(Image.open(folder / "output.png"), np.float32) / 255
    assert np.abs(output - original)[hole].mean() > 0.02  # the page shows a new image
    # ...whose hole is filled towards the photo: closer to it than the black hole it was sent
    assert np.abs(output - original)[hole].mean() < 0.8 * original[hole].mean()


def test_a_bad_file_shows_the_command_lines_message(page, served):
    before = list(served[1].iterdir())
    page.set_input_files(
        "#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"plain text"}]
    )
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").text_content() == "notes.png: not an image (unrecognised format)"
    assert list(served[1].iterdir()) == before


def test_inpainting_without_a_mask_is_refused_on_the_page(page, served, photo):
    page.set_input_files("#file", str(photo))
    page.select_option("#task", "inpaint")
    page.wait_for_selector("#mask-canvas:not([hidden])")
    before = list(served[1].iterdir())
    page.click("#start")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").text_content().startswith("mask: none given")
    assert list(served[1].iterdir()) == before


def test_the_noise_choice_shows_only_for_an_image_degraded_on_purpose(page, photo):
    page.select_option("#task", "denoise")
    noise = page.locator("[data-for=denoise]")
    assert noise.is_visible()  # the demo image is degraded on purpose
    page.select_option("#noise", "jpeg")
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.querySelector('[data-for=denoise]').hidden")
    assert page.locator("#noise").input_value() == ""  # not sent for a noisy photo
    page.check("#degrade")
    assert noise.is_visible()
    page.select_option("#task", "superres")
    assert not noise.is_visible()
