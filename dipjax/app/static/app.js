// dipjax's page: open an image, paint a mask, start a job, follow it, compare and download.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { options: null, image: null, imageName: "", size: null, strokes: [],
  erase: false, job: null, events: null, curve: [], previewAt: 0 };

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function api(url, init) {
  const r = await fetch(url, init);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// ---- options: tasks, presets, defaults -------------------------------------------------
async function loadOptions() {
  const o = state.options = await api("/api/options");
  $("device").textContent = `device: ${o.device}`;
  for (const n of o.noises) $("noise").add(new Option(n, n));
  taskChanged();
}

function taskChanged() {
  const task = $("task").value, o = state.options;
  for (const el of document.querySelectorAll("[data-for]")) {
    const fors = el.dataset.for.split(" ");
    if (fors.some((f) => o.tasks.includes(f))) el.hidden = !fors.includes(task);
  }
  const sel = $("preset");
  sel.length = 0;
  sel.add(new Option(`default (${o.defaults[task]})`, ""));
  for (const name of o.presets[task]) sel.add(new Option(name, name));
  presetChanged();
  maskSourceChanged();
  noiseShown();
}

// A noise kind is added only to an image degraded on purpose (the demo, or "degrade" ticked).
function noiseShown() {
  const label = document.querySelector("[data-for=denoise]");
  label.hidden = !($("task").value === "denoise" && (!state.image || $("degrade").checked));
  if (label.hidden) $("noise").value = "";
}

function presetChanged() {
  const name = $("preset").value || state.options.defaults[$("task").value];
  $("iters").placeholder = `${state.options.iters[name]} (preset's)`;
}

function maskSourceChanged() {
  const masked = ["inpaint", "restore"].includes($("task").value), src = $("mask_source").value;
  document.querySelector("[data-for=mask-file]").hidden = !(masked && src === "file");
  document.querySelector("[data-for=keep]").hidden = !(masked && src === "random");
  const painting = masked && src === "paint" && state.size;
  $("tools").hidden = !painting;
  $("mask-canvas").hidden = !painting;
}

// ---- the image: open, drop, demo ---------------------------------------------------------
async function openFile(file) {
  showError("");
  const fd = new FormData();
  fd.append("image", file, file.name);
  try {
    await api("/api/inspect", { method: "POST", body: fd });
  } catch (e) {
    showError(e.message);
    return;
  }
  state.image = file;
  state.imageName = file.name;
  noiseShown();
  await showImage(URL.createObjectURL(file));
}

async function useDemo() {
  showError("");
  state.image = null;
  state.imageName = "the demo image (degraded on purpose)";
  noiseShown();
  await showImage("/api/demo.png");
}

async function showImage(url) {
  $("image-name").textContent = state.imageName;
  const img = new Image();
  img.src = url;
  try {
    await img.decode();
  } catch (e) {
    state.size = null;
    $("stack").hidden = true;
    $("no-preview").hidden = false;
    maskSourceChanged();
    return;
  }
  const w = img.naturalWidth, h = img.naturalHeight;
  state.size = [w, h];
  state.strokes = [];
  const shown = Math.min(720, Math.max(384, w));
  for (const c of [$("image-canvas"), $("mask-canvas")]) {
    c.width = w;
    c.height = h;
    c.style.width = `${shown}px`;
  }
  $("image-canvas").getContext("2d").drawImage(img, 0, 0);
  redrawMask();
  $("stack").hidden = false;
  $("no-preview").hidden = true;
  maskSourceChanged();
}

// ---- the mask: strokes painted on the image ---------------------------------------------
function toImage(ev) {
  const c = $("mask-canvas"), r = c.getBoundingClientRect();
  return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height];
}

function drawStroke(ctx, s, color) {
  ctx.save();
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = s.size;
  ctx.strokeStyle = ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(s.points[0][0], s.points[0][1], s.size / 2, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(...s.points[0]);
  for (const p of s.points.slice(1)) ctx.lineTo(...p);
  ctx.stroke();
  ctx.restore();
}

function redrawMask() {
  const c = $("mask-canvas"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  for (const s of state.strokes) {
    ctx.globalCompositeOperation = s.erase ? "destination-out" : "source-over";
    drawStroke(ctx, s, "#ff1f5a");
  }
  ctx.globalCompositeOperation = "source-over";
}

function setupPainting() {
  const c = $("mask-canvas");
  let stroke = null;
  c.addEventListener("pointerdown", (ev) => {
    c.setPointerCapture(ev.pointerId);
    stroke = { erase: state.erase, size: +$("brush-size").value, points: [toImage(ev)] };
    state.strokes.push(stroke);
    redrawMask();
  });
  c.addEventListener("pointermove", (ev) => {
    if (!stroke) return;
    stroke.points.push(toImage(ev));
    redrawMask();
  });
  const end = () => { stroke = null; };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("brush-size").addEventListener("input", () => { $("brush-px").textContent = $("brush-size").value; });
  const mode = (erase) => {
    state.erase = erase;
    $("brush").classList.toggle("on", !erase);
    $("eraser").classList.toggle("on", erase);
  };
  $("brush").onclick = () => mode(false);
  $("eraser").onclick = () => mode(true);
  $("undo").onclick = () => { state.strokes.pop(); redrawMask(); };
  $("clear").onclick = () => { state.strokes = []; redrawMask(); };
}

// The mask the command line reads: white = known, black = to fill, at the image's size,
// thresholded so that antialiased edges do not make it grey.
function maskBlob() {
  if (!state.strokes.some((s) => !s.erase)) return Promise.resolve(null);
  const [w, h] = state.size, c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  for (const s of state.strokes) drawStroke(ctx, s, s.erase ? "#fff" : "#000");
  const data = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < data.data.length; i += 4) {
    const v = data.data[i] < 128 ? 0 : 255;
    data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
    data.data[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, "image/png"));
}

// ---- start a job ----------------------------------------------------------------------------
async function start(ev) {
  ev.preventDefault();
  showError("");
  const fd = new FormData($("form"));
  if (state.image) fd.append("image", state.image, state.image.name);
  const task = $("task").value, src = $("mask_source").value;
  if (["inpaint", "restore"].includes(task)) {
    if (src === "paint" && state.size) {
      const blob = await maskBlob();
      if (blob) fd.append("mask", blob, "mask.png");
    } else if (src === "file" && $("mask-file").files[0]) {
      fd.append("mask", $("mask-file").files[0], $("mask-file").files[0].name);
    }
  }
  try {
    const job = await api("/api/jobs", { method: "POST", body: fd });
    openJob(job.id);
    refreshJobs();
  } catch (e) {
    showError(e.message);
  }
}

window.addEventListener("DOMContentLoaded", async () => {
  $("task").onchange = taskChanged;
  $("preset").onchange = presetChanged;
  $("mask_source").onchange = maskSourceChanged;
  $("degrade").onchange = noiseShown;
  $("form").onsubmit = start;
  $("file").onchange = () => $("file").files[0] && openFile($("file").files[0]);
  $("demo").onclick = useDemo;
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer.files[0]) openFile(ev.dataTransfer.files[0]);
  });
  setupPainting();
  $("stop").onclick = () => state.job && api(`/api/jobs/${state.job}/stop`, { method: "POST" });
  $("resume").onclick = () => state.job && api(`/api/jobs/${state.job}/resume`, { method: "POST" })
    .then(() => openJob(state.job)).catch((e) => showError(e.message));
  $("slider").oninput = () => {
    $("result-output").style.clipPath = `inset(0 0 0 ${$("slider").value}%)`;
  };
  try {
    await loadOptions();
  } catch (e) {
    showError(e.message);
  }
  refreshJobs();
});
