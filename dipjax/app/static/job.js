// dipjax's page: a job followed live (server-sent events), its curves, its result, the list.
"use strict";

function seconds(s) {
  if (s == null) return "…";
  s = Math.round(s);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function openJob(id) {
  if (state.events) state.events.close();
  state.job = id;
  state.curve = [];
  state.previewAt = 0;
  $("job").hidden = false;
  $("result").hidden = true;
  $("preview").removeAttribute("src");
  $("job-id").textContent = id;
  const es = state.events = new EventSource(`/api/jobs/${id}/events`);
  es.onmessage = (ev) => showJob(JSON.parse(ev.data));
  es.addEventListener("end", () => { es.close(); refreshJobs(); });
}

function statusLine(s) {
  if (s.status === "queued") return `waiting in the queue: position ${s.position}`;
  if (s.status === "running" && s.phase === "compiling")
    return "running: preparing and compiling the steps (the first run of a preset and size " +
      "compiles; later ones load them from the cache)";
  if (s.status === "running") return "running (compiled)";
  if (s.status === "stopping") return "stopping: saving a checkpoint…";
  if (s.status === "done") return "done";
  return `${s.status}${s.message ? ": " + s.message : ""}`;
}

function showJob(s) {
  const url = (name) => `/api/jobs/${s.id}/files/${name}?v=${Date.now()}`;
  $("status").textContent = statusLine(s);
  $("status").className = s.status === "failed" ? "error" : "";
  const p = s.progress || {};
  if (p.iter != null) {
    const batch = p.batches > 1 ? ` (fit ${p.batch} of ${p.batches})` : "";
    const num = (v, f) => (v == null ? "NaN" : f(v));  // non-finite values arrive as null
    const gt = "psnr_gt" in p ? `  PSNR vs clean ${num(p.psnr_gt, (v) => v.toFixed(2))} dB` : "";
    $("stats").textContent = `iteration ${p.iter}/${p.iters}${batch}  loss ${num(p.loss, (v) => v.toPrecision(4))}` +
      `  PSNR vs input ${num(p.psnr_fit, (v) => v.toFixed(2))} dB${gt}` +
      (s.status === "running" ? `  ETA ${seconds(p.eta_s)}` : "");
  } else {
    $("stats").textContent = "";
  }
  if (s.curve_from === 0) state.curve = [];
  state.curve.push(...s.curve);
  drawCurves(state.curve);
  const now = Date.now();
  if (s.files.includes("preview.png") && now - state.previewAt > 2000) {
    state.previewAt = now;
    $("preview").src = url("preview.png");
  }
  $("stop").hidden = !["queued", "running"].includes(s.status);
  $("resume").hidden = !s.resumable;
  $("notes").replaceChildren(...s.notes.filter((n) => !n.startsWith("error:")).map((n) => {
    const li = document.createElement("li");
    li.textContent = n;
    return li;
  }));
  const finished = s.files.includes("output.png") || s.files.includes("mean.png");
  if (["done", "stopped"].includes(s.status) && finished) showResult(s, url);
}

function showResult(s, url) {
  const out = s.files.includes("mean.png") ? "mean.png" : "output.png";
  $("result-input").src = url(s.files.includes("degraded.png") ? "degraded.png" : "inputs/image");
  $("result-output").src = url(out);
  $("preview").src = url(s.files.includes("output_avg.png") ? "output_avg.png" : out);
  const labels = { "output.png": "output", "mean.png": "mean of the seeds",
    "output_avg.png": "moving average", "output_es.png": "early-stopping output",
    "posterior_mean.png": "posterior mean", "posterior_std.png": "posterior std",
    "summary.json": "summary.json" };
  $("downloads").replaceChildren(...Object.keys(labels).filter((f) => s.files.includes(f)).map((f) => {
    const a = document.createElement("a");
    a.href = `/api/jobs/${s.id}/files/${f}`;
    a.download = `${s.id}-${f}`;
    a.textContent = `download ${labels[f]}`;
    return a;
  }));
  $("result").hidden = false;
}

// Loss on a log scale in the top half, PSNR (against the input, and the clean image when
// known) in the bottom half; each with its range written at the left.
function drawCurves(rows) {
  const c = $("curves"), ctx = c.getContext("2d"), w = c.width, h = c.height, pad = 46;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px sans-serif";
  if (!rows.length) return;
  const x = (it) => pad + (w - pad - 8) * (it - rows[0][0]) / Math.max(1, rows[rows.length - 1][0] - rows[0][0]);
  const panel = (top, height, series, log) => {
    const vals = series.flatMap((s) => rows.map((r) => r[s.col]).filter((v) => v != null && isFinite(v) && (!log || v > 0)));
    if (!vals.length) return;
    const f = log ? Math.log10 : (v) => v;
    let lo = f(Math.min(...vals)), hi = f(Math.max(...vals));
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const y = (v) => top + height - (height - 6) * (f(v) - lo) / (hi - lo) - 3;
    ctx.strokeStyle = "#d5dbe1";
    ctx.strokeRect(pad, top, w - pad - 8, height);
    ctx.fillStyle = "#66707a";
    ctx.fillText(log ? (10 ** hi).toPrecision(2) : hi.toFixed(1), 2, top + 10);
    ctx.fillText(log ? (10 ** lo).toPrecision(2) : lo.toFixed(1), 2, top + height - 2);
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      let first = true;
      for (const r of rows) {
        const v = r[s.col];
        if (v == null || !isFinite(v) || (log && v <= 0)) continue;
        first ? ctx.moveTo(x(r[0]), y(v)) : ctx.lineTo(x(r[0]), y(v));
        first = false;
      }
      ctx.stroke();
    }
  };
  const half = (h - 24) / 2;
  panel(4, half, [{ col: 1, color: "#2563eb" }], true);
  panel(half + 12, half, [{ col: 2, color: "#059669" }, { col: 3, color: "#d97706" }], false);
  ctx.fillStyle = "#66707a";
  ctx.fillText(`iteration ${rows[0][0]}`, pad, h - 2);
  ctx.fillText(`${rows[rows.length - 1][0]}`, w - 40, h - 2);
}

async function refreshJobs() {
  let jobs;
  try {
    jobs = await api("/api/jobs");
  } catch (e) {
    return;
  }
  $("jobs").replaceChildren(...jobs.map((j) => {
    const li = document.createElement("li");
    const when = new Date(j.created * 1000).toLocaleString();
    const where = j.position ? ` (position ${j.position})` : "";
    li.textContent = `${when}  ${j.task}  ${j.name}: ${j.status}${where}`;
    li.onclick = () => openJob(j.id);
    return li;
  }));
}
