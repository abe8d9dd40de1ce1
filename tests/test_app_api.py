"""The page's HTTP API (dipjax.app.server) through Starlette's TestClient: uploads good and bad,
a tiny job streamed to its end, stop and resume, the run files it leaves."""

import io
import json
import time

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
pytest.importorskip("httpx", reason="the app extra (httpx, for TestClient) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from dipjax.app.server import create_app  # noqa: E402

SIZE = 64


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


IMAGE = png_bytes((smooth_image(SIZE, SIZE) * 255).astype(np.uint8))


def hole_mask(size=SIZE, top=20, bottom=36) -> bytes:
    m = np.full((size, size), 255, np.uint8)
    m[top:bottom, 16:48] = 0  # black = to fill
    return png_bytes(m)


FIELDS = {"task": "inpaint", "iters": "10", "seeds": "1", "mask_source": "paint"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs, max_upload_bytes=2**20)) as c:
        yield c


def submit(client, fields=None, image=IMAGE, mask=None, name="photo.png"):
    files = {"image": (name, image, "image/png")} if image is not None else {}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post("/api/jobs", data={**FIELDS, **(fields or {})}, files=files)


def wait(client, job_id, until, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        state = client.get(f"/api/jobs/{job_id}").json()
        if until(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck: {state}")


def test_page_and_options(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    opts = client.get("/api/options").json()
    assert opts["defaults"]["inpaint"] == "inpaint-fast"  # the CLI's choice on a CPU
    assert "superres-x8" in opts["presets"]["superres"] and opts["iters"]["inpaint-fast"] > 0
    demo = client.get("/api/demo.png")
    assert Image.open(io.BytesIO(demo.content)).size == (256, 256)


@pytest.mark.parametrize(
    "fields, image, mask, status, message",
    [
        ({}, b"hello, not a picture", hole_mask(), 400, "photo.png: not an image"),
        ({}, IMAGE[: len(IMAGE) // 2], hole_mask(), 400, "photo.png: corrupt or truncated"),
        ({}, b"\0" * (2**20 + 1), None, 413, "over the limit of 1 MB"),
        ({}, IMAGE, hole_mask(32), 400, "mask.png: size 32x32 differs from the image's 64x64"),
        ({}, IMAGE, png_bytes(np.full((SIZE, SIZE), 255, np.uint8)), 400, "no pixel to fill"),
        ({}, IMAGE, None, 400, "mask: none given"),
        ({"task": "sharpen"}, IMAGE, None, 400, "argument --task: invalid choice: 'sharpen'"),
        ({"preset": "huge"}, IMAGE, hole_mask(), 400, "argument --preset: invalid choice"),
        ({"preset": "denoise-fast"}, IMAGE, hole_mask(), 400, "is for task denoise"),
        ({"iters": "-5"}, IMAGE, hole_mask(), 400, "--iters -5: must be an integer in 1..1000000"),
        ({"iters": "ten"}, IMAGE, hole_mask(), 400, "invalid int value: 'ten'"),
        ({"seeds": "0"}, IMAGE, hole_mask(), 400, "--seeds 0: must be an integer >= 1"),
        ({"task": "denoise", "noise": "jpeg"}, IMAGE, None, 400, "--noise applies with --degrade"),
    ],
)
def test_bad_input_is_one_line_4xx_and_writes_nothing(
    client, runs, fields, image, mask, status, message
):
    before = sorted(runs.iterdir())
    r = submit(client, fields, image, mask)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error and "/tmp" not in error
    assert sorted(runs.iterdir()) == before


@pytest.mark.parametrize("url", ["/api/jobs", "/api/inspect"])
def test_a_malformed_upload_is_400_not_413(client, runs, url):
    before = sorted(runs.iterdir())
    r = client.post(
        url, content=b"garbage", headers={"content-type": "multipart/form-data; boundary=xx"}
    )
    assert r.status_code == 400 and r.json()["error"].startswith("upload: "), r.text
    assert sorted(runs.iterdir()) == before


def test_too_many_pixels_and_inspect(client, monkeypatch):
    ok = client.post("/api/inspect", files={"image": ("a.png", IMAGE, "image/png")})
    assert ok.json() == {"width": SIZE, "height": SIZE}
    monkeypatch.setenv("DIPJAX_MAX_PIXELS", "1000")
    r = client.post("/api/inspect", files={"image": ("a.png", IMAGE, "image/png")})
    assert r.status_code == 400 and "a.png: 64x64 is 0 megapixels, over the limit" in r.text


def test_client_file_names_never_become_paths(client, runs, tmp_path):
    r = submit(client, image=b"junk", mask=hole_mask(), name="../../../escape.png")
    assert r.status_code == 400 and r.json()["error"].startswith("escape.png: not an image")
    assert not list(runs.parent.glob("escape*")) and not list(runs.glob("*/escape*"))
    assert client.get("/api/jobs/..%2F..%2Fetc/files/summary.json").status_code == 404


@pytest.fixture(scope="module")
def finished(client, runs):
    r = submit(client, mask=hole_mask())
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["name"] == "photo.png"
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as events:
        data = [json.loads(line[6:]) for line in events.iter_lines() if line[:6] == "data: "]
    return job, [d for d in data if d]  # the last event, 'end', carries {}


def test_job_streams_progress_to_the_end(finished, runs):
    job, states = finished
    assert not any(str(runs) in json.dumps(s) for s in states)  # no server path reaches a client
    assert states[-1]["status"] == "done", states[-1]
    curve = [row for s in states for row in s["curve"]]
    assert [row[0] for row in curve] == list(range(1, 11))  # every iteration, once
    assert states[-1]["progress"]["iter"] == 10 and states[-1]["progress"]["loss"] > 0
    assert any("no accelerator found" in n for n in states[-1]["notes"])
    assert not any("./" in n or "python -m" in n for n in states[-1]["notes"]), states[-1]


def test_job_folder_is_a_command_line_run_folder(finished, client, runs):
    job, _ = finished
    folder = runs / job["id"]
    record = json.loads((folder / "run.json").read_text())
    assert record["task"] == "inpaint" and record["iters"] == 10
    assert record["mask"] == str(folder / "inputs" / "mask.png")
    assert record["image"] == [str(folder / "inputs" / "image.png")]
    for name in ("output.png", "output_avg.png", "summary.json", "metrics.jsonl", "degraded.png"):
        r = client.get(f"/api/jobs/{job['id']}/files/{name}")
        assert r.status_code == 200, name
    out = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/output.png").content))
    assert out.size == (SIZE, SIZE)
    summary = client.get(f"/api/jobs/{job['id']}/files/summary.json").json()
    assert summary["preset"] == "inpaint-fast" and summary["fits"][0]["iters_done"] == 10
    assert not (folder / "checkpoint").exists()
    assert client.get(f"/api/jobs/{job['id']}/files/run.json").status_code == 404
    # percent-encoded, so that the client does not resolve the dots before the server sees them
    for name in ("%2E%2E/job.json", "seed_0/%2E%2E/job.json", "inputs/%2E%2E/job.json"):
        assert client.get(f"/api/jobs/{job['id']}/files/{name}").status_code == 404, name
    assert (folder / "job.json").is_file()


def test_a_new_server_lists_the_finished_job(finished, runs):
    job, _ = finished
    with TestClient(create_app(runs, start_worker=False)) as again:
        jobs = again.get("/api/jobs").json()
        assert str(runs) not in json.dumps(jobs)  # no server path reaches a client
        listed = {j["id"]: j for j in jobs}
        assert listed[job["id"]]["status"] == "done"
        state = again.get(f"/api/jobs/{job['id']}").json()
        assert [row[0] for row in state["curve"]] == list(range(1, 11))


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_resume_finishes(client, runs):
    job = submit(client, {"iters": "60"}, mask=hole_mask()).json()
    wait(client, job["id"], lambda s: s["progress"].get("iter", 0) >= 5)
    client.post(f"/api/jobs/{job['id']}/stop")
    stopped = wait(client, job["id"], lambda s: s["status"] in ("stopped", "done", "failed"))
    assert stopped["status"] == "stopped" and stopped["resumable"], stopped
    assert not any("--resume" in n for n in stopped["notes"]), stopped["notes"]  # the page's job
    assert (runs / job["id"] / "checkpoint").is_dir()
    done_before = stopped["progress"]["iter"]
    assert done_before < 60
    r = client.post(f"/api/jobs/{job['id']}/resume")
    assert r.status_code == 200 and r.json()["status"] in ("queued", "running")
    done = wait(client, job["id"], lambda s: s["status"] in ("done", "failed"))
    assert done["status"] == "done", done
    rows = (runs / job["id"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iter"] for line in rows] == list(range(1, 61))
    assert not (runs / job["id"] / "checkpoint").exists()
    assert client.post(f"/api/jobs/{job['id']}/resume").status_code == 409


@pytest.mark.slow
def test_the_command_serves_the_page_and_warns_off_localhost(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = "import sys, dipjax, dipjax.fit, dipjax.api; print('starlette' in sys.modules)"
    core = subprocess.run([sys.executable, "-c", cmd], capture_output=True, text=True, env=env)
    assert core.stdout.strip() == "False"  # only dipjax.app imports the extra
    proc = subprocess.Popen(
        [sys.executable, "-m", "dipjax.app", "--host", "0.0.0.0", "--port", "0"]
        + ["--runs", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("dipjax-app: serving on http://0.0.0.0:"), line
        port = int(line.split(":")[3].split("/")[0])
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
        assert b"<canvas" in page
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "warning: listening on 0.0.0.0: the page has no login" in err
    assert (tmp_path / "runs").is_dir()
