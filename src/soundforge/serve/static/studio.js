// soundforge studio: the page `soundforge serve` answers at "/". Plain script, no build step; it speaks only the
// public HTTP API (/v1/providers, /v1/generations...), so what it shows is what any client would get.
"use strict";

const $ = (id) => document.getElementById(id);
// What the page knows and has drawn, kept in one object so that tests (and curious users) can read it.
const studio = (window.studio = {providers: {}, takes: {}, views: {}, ab: null, stems: null, history: []});
let audio = null; // the AudioContext, made inside the first click so that the browser lets it play
let current = null; // the job whose progress is shown
const FFT_SIZE = 1024;
const KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

// --- talking to the server ---
function headers(json) {
  const h = {};
  const t = $("token").value.trim();
  if (t) h["Authorization"] = "Bearer " + t;
  if (json) h["Content-Type"] = "application/json";
  return h;
}
async function api(path, options = {}) {
  return fetch(path, {...options, headers: headers(Boolean(options.body))});
}
// A page action whose failure is shown, not lost in the console (the job itself is safe on the server).
function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (e) {
      showError(e && e.error ? e : {error: {code: "page_error", message: "the page could not do that: " + (e.message || e)}});
    }
  };
}
function showError(body) {
  const e = (body && body.error) || {message: String(body)};
  $("error").hidden = false;
  $("error").textContent = (e.type || e.code || "error") + ": " + e.message + (e.hint ? " (" + e.hint + ")" : "");
}

// --- small view helpers ---
function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}
function fill(dl, rows) {
  dl.innerHTML = "";
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "") continue;
    const dd = element("dd");
    if (v instanceof Node) dd.appendChild(v);
    else dd.textContent = v;
    dl.append(element("dt", k), dd);
  }
}
// The colour class of a licence's commercial verdict (the record says it; the page only colours it).
function useClass(use) {
  return use === "allowed" ? "yes" : use === "conditional" ? "cond" : "no";
}
function licenceBadge(lic) {
  if (!lic) return element("span", "no licence record", "badge no");
  const use = lic.commercial_use;
  const words = use === "allowed" ? "commercial use" : use === "conditional" ? "conditional" : use.replace("_", " ");
  const badge = element("span", lic.id + " · " + words, "badge " + useClass(use));
  badge.title = lic.condition || lic.plan_note || lic.name || "";
  return badge;
}

// --- providers: the select, the form built from capabilities, the policy table ---
async function loadProviders() {
  const r = await api("/v1/providers");
  if (!r.ok) return showError(await r.json().catch(() => r.statusText));
  $("error").hidden = true; // an earlier refusal (a missing token) no longer stands
  const rows = await r.json();
  const sel = $("provider");
  const chosen = sel.value || "synth";
  sel.innerHTML = "";
  studio.providers = {};
  const body = $("policy").tBodies[0];
  body.innerHTML = "";
  for (const p of rows) {
    studio.providers[p.name] = p;
    const o = element("option");
    o.value = p.name;
    // Refused by the policy or unavailable here: listed, not chosen, with the reason beside it.
    const why = !p.policy_allows ? " (refused by policy)" : !p.available ? " (unavailable)" : "";
    o.textContent = p.name + why;
    o.disabled = !p.available || !p.policy_allows;
    o.title = !p.policy_allows ? p.policy_clause : p.reason;
    sel.appendChild(o);
    const verdict = p.policy_allows ? element("span", "allowed", "yes") : element("span", "refused: " + p.policy_clause, "no");
    const tr = element("tr");
    tr.dataset.provider = p.name;
    const cell = (child) => { const td = element("td"); td.append(child); return td; };
    const here = p.available ? element("span", "ready", "yes") : element("span", "unavailable: " + p.reason, "note");
    tr.append(cell(element("span", p.name)), cell(licenceBadge(p.license)), cell(verdict), cell(here));
    body.appendChild(tr);
  }
  const usable = rows.find((p) => p.name === chosen && p.available && p.policy_allows);
  sel.value = usable ? chosen : (rows.find((p) => p.available && p.policy_allows) || {name: ""}).name;
  buildForm();
}
// Show the fields the chosen provider's default model honours; the song fieldset only for models that take one.
function buildForm() {
  const p = studio.providers[$("provider").value];
  const caps = p && p.capabilities;
  const honours = (field) => !caps || caps.fields.includes(field);
  for (const el of document.querySelectorAll("[data-field]")) el.hidden = !honours(el.dataset.field);
  if (caps && !caps.vocals) for (const el of document.querySelectorAll('[data-field="instrumental"]')) el.hidden = true;
  for (const set of ["song", "sampling"]) {
    $(set).hidden = false;
    $(set).hidden = ![...$(set).querySelectorAll("[data-name]")].some((el) => !el.closest("[hidden]"));
  }
  if (caps) {
    const d = $("duration");
    d.min = caps.min_duration > 0 ? caps.min_duration : 0.5;
    d.max = caps.max_duration;
    const value = Number(d.value);
    if (value < caps.min_duration) d.value = caps.min_duration;
    if (value > caps.max_duration) d.value = caps.max_duration;
  }
  const note = [];
  if (p && p.license) note.push(p.license.id);
  if (caps) note.push(caps.cost_hint, caps.min_duration + "–" + caps.max_duration + " s");
  $("provider-note").textContent = note.join(" · ");
  buildStems();
}
// Stems are separated by soundforge (Demucs by default): the choices are the separator's.
function buildStems() {
  const separator = studio.providers.demucs;
  const names = separator && separator.capabilities ? separator.capabilities.stems : [];
  const box = $("stem-choices");
  const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  box.innerHTML = "";
  for (const name of names) {
    const label = element("label");
    const input = element("input");
    input.type = "checkbox";
    input.value = name;
    input.name = "stem";
    input.checked = checked.has(name);
    label.append(input, " " + name);
    box.appendChild(label);
  }
  $("stems-field").hidden = names.length === 0;
  $("stems-note").textContent = separator && !separator.available ? "the separator is unavailable: " + separator.reason
    : separator && !separator.policy_allows ? "the separator is refused by policy: " + separator.policy_clause : "";
}
// The request from the visible fields: a hidden field (one the provider does not honour) is never sent.
function readRequest() {
  const request = {prompt: $("prompt").value, duration: Number($("duration").value)};
  for (const el of document.querySelectorAll("[data-name]")) {
    if (el.hidden || el.closest("[hidden]")) continue;
    const name = el.dataset.name;
    if (el.type === "checkbox") { if (el.checked) request[name] = true; continue; }
    if (el.value.trim() === "") continue;
    request[name] = el.type === "number" ? Number(el.value) : el.value;
  }
  if (request.instrumental) delete request.lyrics;
  const stems = [...$("stem-choices").querySelectorAll("input:checked")].map((i) => i.value);
  if (stems.length && !$("stems-field").hidden) request.stems = stems;
  return request;
}
function insertSection(name) {
  const area = $("lyrics");
  const at = area.selectionStart ?? area.value.length;
  const before = area.value.slice(0, at);
  const header = (before && !before.endsWith("\n\n") ? (before.endsWith("\n") ? "\n" : "\n\n") : "") + "[" + name + "]\n";
  area.value = before + header + area.value.slice(at);
  area.selectionStart = area.selectionEnd = at + header.length;
  area.focus();
}

// --- audio: WAV files read exactly (no resampling), drawn, played through Web Audio ---
function text(view, at, length) {
  let s = "";
  for (let i = 0; i < length; i++) s += String.fromCharCode(view.getUint8(at + i));
  return s;
}
// The samples of a RIFF/WAVE file (PCM 16/24/32-bit or float), one Float32Array per channel, at the file's rate.
function parseWav(buffer) {
  const v = new DataView(buffer);
  if (v.byteLength < 12 || text(v, 0, 4) !== "RIFF" || text(v, 8, 4) !== "WAVE") throw new Error("not a WAV file");
  let at = 12, fmt = null;
  while (at + 8 <= v.byteLength) {
    const id = text(v, at, 4);
    let size = v.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      let format = v.getUint16(body, true);
      if (format === 0xfffe) format = v.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE: the sub-format
      fmt = {format, channels: v.getUint16(body + 2, true), rate: v.getUint32(body + 4, true), bits: v.getUint16(body + 14, true)};
    } else if (id === "data" && fmt) {
      if (size === 0xffffffff || body + size > v.byteLength) size = v.byteLength - body; // open-ended (streamed)
      const width = fmt.bits / 8, frames = Math.floor(size / (width * fmt.channels));
      const read = fmt.format === 3 ? (fmt.bits === 64 ? (o) => v.getFloat64(o, true) : (o) => v.getFloat32(o, true))
        : fmt.bits === 16 ? (o) => v.getInt16(o, true) / 32768
        : fmt.bits === 24 ? (o) => ((v.getUint8(o) | (v.getUint8(o + 1) << 8) | (v.getInt8(o + 2) << 16)) / 8388608)
        : fmt.bits === 32 ? (o) => v.getInt32(o, true) / 2147483648 : null;
      if (!read) throw new Error("unsupported WAV encoding: format " + fmt.format + ", " + fmt.bits + " bits");
      const channels = [];
      for (let c = 0; c < fmt.channels; c++) {
        const out = new Float32Array(frames);
        for (let i = 0, o = body + c * width; i < frames; i++, o += width * fmt.channels) out[i] = read(o);
        channels.push(out);
      }
      return {rate: fmt.rate, channels};
    }
    at = body + size + (size & 1);
  }
  throw new Error("the WAV file has no audio data");
}
// For each of `columns` equal spans of the track: the lowest and highest sample over every channel.
function peaks(channels, columns) {
  const n = channels[0].length, out = [];
  for (let i = 0; i < columns; i++) {
    const a = Math.min(Math.floor((i * n) / columns), n - 1), b = Math.min(Math.max(a + 1, Math.floor(((i + 1) * n) / columns)), n);
    let lo = Infinity, hi = -Infinity;
    for (const ch of channels) for (let j = a; j < b; j++) { const x = ch[j]; if (x < lo) lo = x; if (x > hi) hi = x; }
    out.push([lo, hi]);
  }
  return out;
}
function drawWaveform(canvas, view, colour = "#7aa2ff") {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height, mid = h / 2;
  g.fillStyle = "#0f1115";
  g.fillRect(0, 0, w, h);
  g.fillStyle = colour;
  view.forEach(([lo, hi], x) => {
    const top = mid - Math.max(-1, Math.min(1, hi)) * mid, bottom = mid - Math.max(-1, Math.min(1, lo)) * mid;
    g.fillRect(x, top, 1, Math.max(1, bottom - top));
  });
}
// In-place radix-2 FFT of (re, im), both Float64Array of a power-of-two length.
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(step * k), wi = Math.sin(step * k);
        const a = start + k, b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
      }
    }
  }
}
// One Hann-windowed FFT frame of the channels' mean per column: power per bin, with each column's loudest bin
// and total power (what the tests compare with NumPy's FFT of the same frames).
function spectrum(channels, columns) {
  const n = channels[0].length, half = FFT_SIZE / 2, frames = [], peakBins = [], energy = [];
  const window = new Float64Array(FFT_SIZE).map((_, k) => 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / FFT_SIZE));
  for (let i = 0; i < columns; i++) {
    const start = n > FFT_SIZE && columns > 1 ? Math.floor((i * (n - FFT_SIZE)) / (columns - 1)) : 0;
    const re = new Float64Array(FFT_SIZE), im = new Float64Array(FFT_SIZE);
    for (let k = 0; k < FFT_SIZE && start + k < n; k++) {
      let sum = 0;
      for (const ch of channels) sum += ch[start + k];
      re[k] = (sum / channels.length) * window[k];
    }
    fft(re, im);
    const power = new Float64Array(half + 1);
    let best = 0, total = 0;
    for (let k = 0; k <= half; k++) {
      power[k] = re[k] * re[k] + im[k] * im[k];
      total += power[k];
      if (power[k] > power[best]) best = k;
    }
    frames.push(power); peakBins.push(best); energy.push(total);
  }
  return {frames, peakBins, energy};
}
// Colour for a level in [0, 1]: dark blue through magenta and orange to pale yellow.
const STOPS = [[15, 17, 21], [59, 15, 112], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
function colour(t) {
  const x = Math.max(0, Math.min(1, t)) * (STOPS.length - 1), i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + (STOPS[i + 1][k] - c) * f));
}
// Frequency on a log scale (bin 1 at the bottom, Nyquist at the top), 80 dB of range below the loudest point.
function drawSpectrogram(canvas, spec) {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height, image = g.createImageData(w, h);
  const half = FFT_SIZE / 2;
  let top = -Infinity;
  const db = spec.frames.map((p) => p.map((x) => { const d = 10 * Math.log10(x + 1e-12); if (d > top) top = d; return d; }));
  for (let x = 0; x < w && x < db.length; x++) {
    for (let y = 0; y < h; y++) {
      const r = h - 1 - y;
      const b0 = Math.floor(Math.exp((Math.log(half) * r) / h)), b1 = Math.max(b0 + 1, Math.floor(Math.exp((Math.log(half) * (r + 1)) / h)));
      let level = -Infinity;
      for (let b = b0; b < b1 && b <= half; b++) level = Math.max(level, db[x][b]);
      const [cr, cg, cb] = colour((level - (top - 80)) / 80), o = 4 * (y * w + x);
      image.data[o] = cr; image.data[o + 1] = cg; image.data[o + 2] = cb; image.data[o + 3] = 255;
    }
  }
  g.putImageData(image, 0, 0);
}
// A take (a job's audio, or one of its stems): fetched once, read exactly, kept as an AudioBuffer.
async function loadTake(id, stem) {
  const key = stem ? id + ":" + stem : id;
  if (studio.takes[key]) return studio.takes[key];
  const r = await api("/v1/generations/" + id + "/audio?format=wav" + (stem ? "&stem=" + encodeURIComponent(stem) : ""));
  if (!r.ok) throw await r.json().catch(() => r.statusText);
  const blob = await r.blob();
  const wav = parseWav(await blob.arrayBuffer());
  return (studio.takes[key] = {id, stem, rate: wav.rate, channels: wav.channels, buffer: playable(wav), url: URL.createObjectURL(blob)});
}
// An AudioBuffer of the samples. Web Audio plays rates from 3000 Hz up: a lower rate (a tiny test model's) is
// raised by a whole factor, each sample held, so the sound and its length stay as they are.
function playable(wav) {
  const factor = Math.ceil(3000 / wav.rate), frames = wav.channels[0].length;
  const buffer = context().createBuffer(wav.channels.length, frames * factor, wav.rate * factor);
  wav.channels.forEach((ch, c) => {
    const out = buffer.getChannelData(c);
    for (let i = 0; i < frames * factor; i++) out[i] = ch[Math.floor(i / factor)];
  });
  return buffer;
}
function context() {
  audio = audio || new AudioContext();
  return audio;
}
// Several buffers started together, each through its own gain: A/B and stems play sample-aligned.
class Mixer {
  constructor(buffers) {
    this.ctx = context();
    this.buffers = buffers;
    this.gains = buffers.map(() => { const g = this.ctx.createGain(); g.connect(this.ctx.destination); return g; });
    this.sources = [];
  }
  play() {
    this.stop();
    this.ctx.resume();
    const when = this.ctx.currentTime + 0.05;
    this.sources = this.buffers.map((b, i) => {
      const s = this.ctx.createBufferSource();
      s.buffer = b; s.connect(this.gains[i]); s.start(when);
      return s;
    });
  }
  stop() {
    for (const s of this.sources) try { s.stop(); } catch (e) { /* not started */ }
    this.sources = [];
  }
  set(levels) { levels.forEach((v, i) => { this.gains[i].gain.value = v; }); } // from now on, read back at once
  levels() { return this.gains.map((g) => g.gain.value); }
}

// --- a finished job: player, waveform, spectrogram, stems, licence, provenance ---
async function show(id, job) {
  $("status").hidden = true; $("listening").hidden = true;
  const take = await loadTake(id);
  $("player").src = take.url;
  $("download").href = take.url;
  $("download").download = "soundforge-" + id + ".wav";
  $("result-title").textContent = job.request.prompt;
  const wave = peaks(take.channels, $("waveform").width), spec = spectrum(take.channels, $("spectrogram").width);
  drawWaveform($("waveform"), wave);
  drawSpectrogram($("spectrogram"), spec);
  studio.views[id] = {columns: wave.length, peaks: wave, peakBins: spec.peakBins, energy: spec.energy, rate: take.rate};
  studio.shown = id;
  const lic = job.license;
  const link = element("a", lic.id);
  link.href = lic.url;
  const use = lic.commercial_use;
  const said = use === "allowed" ? "yes" : use === "conditional" ? "conditional: " + lic.condition : use.replace("_", " ");
  const verdict = element("span", said, useClass(use));
  fill($("license"), [["licence", link], ["commercial use", verdict],
    ["attribution", lic.attribution_required ? lic.attribution : "none required"], ["note", lic.plan_note],
    ["output ownership", lic.output_ownership]]);
  const p = job.provenance;
  fill($("provenance"), [["AI-generated", String(p.ai_generated)], ["provider", p.provider], ["model", p.model],
    ["seed", String(p.seed)], ["cost", job.cost_text], ["created", p.created_at], ["PCM sha256", p.pcm_sha256]]);
  await showStems(id, job);
  $("result").hidden = false;
}
// Each stem on its own row (licence, waveform, solo, mute), played together through one mixer.
async function showStems(id, job) {
  if (studio.stems) studio.stems.mixer.stop();
  studio.stems = null;
  const stems = job.stems || [];
  $("stems-mixer").hidden = stems.length === 0;
  const rows = $("stem-rows");
  rows.innerHTML = "";
  if (!stems.length) return;
  const names = stems.map((s) => s.role);
  const takes = await Promise.all(names.map((name) => loadTake(id, name)));
  const state = (studio.stems = {id, names, solo: new Set(), mute: new Set(), mixer: new Mixer(takes.map((t) => t.buffer)), levels: []});
  names.forEach((name, i) => {
    const row = element("div", undefined, "stem");
    row.dataset.stem = name;
    const canvas = element("canvas");
    canvas.width = 400; canvas.height = 36;
    drawWaveform(canvas, peaks(takes[i].channels, canvas.width), "#9be28a");
    const buttons = element("div", undefined, "row");
    for (const kind of ["solo", "mute"]) {
      const b = element("button", kind === "solo" ? "Solo" : "Mute");
      b.type = "button"; b.dataset.action = kind;
      b.addEventListener("click", () => {
        const set = state[kind];
        set.has(name) ? set.delete(name) : set.add(name);
        b.classList.toggle("on", set.has(name));
        applyStemLevels();
      });
      buttons.appendChild(b);
    }
    buttons.appendChild(licenceBadge(stems[i].license));
    row.append(element("span", name), canvas, buttons);
    rows.appendChild(row);
  });
  applyStemLevels();
}
// Soloed stems alone when any is soloed, else every stem; a muted stem is silent either way.
function applyStemLevels() {
  const s = studio.stems;
  const levels = s.names.map((n) => (s.mute.has(n) ? 0 : s.solo.size && !s.solo.has(n) ? 0 : 1));
  s.mixer.set(levels);
  s.levels = levels;
}

// --- history and A/B ---
async function loadHistory() {
  const r = await api("/v1/generations?limit=30");
  if (!r.ok) return;
  const {jobs} = await r.json();
  studio.history = jobs.map((j) => j.id);
  const body = $("history").tBodies[0];
  body.innerHTML = "";
  for (const job of jobs) {
    const tr = element("tr");
    tr.dataset.id = job.id;
    const when = new Date(job.created_at * 1000).toLocaleTimeString();
    const provider = (job.provenance && job.provenance.provider) || job.provider || "auto";
    const cells = [element("span", when), element("span", job.request.prompt), element("span", provider),
      element("span", job.status), job.license ? licenceBadge(job.license) : element("span", ""),
      element("span", job.cost_text || "")];
    for (const [i, child] of cells.entries()) {
      const td = element("td", undefined, i === 1 ? "prompt" : "");
      if (i === 1) td.title = job.request.prompt;
      td.append(child);
      tr.appendChild(td);
    }
    const actions = element("td");
    if (job.status === "succeeded") {
      for (const [label, act] of [["Open", () => show(job.id, job)], ["A", () => pick("A", job)], ["B", () => pick("B", job)]]) {
        const b = element("button", label);
        b.type = "button"; b.dataset.action = label;
        b.addEventListener("click", guarded(act));
        actions.appendChild(b);
      }
    }
    tr.appendChild(actions);
    body.appendChild(tr);
  }
}
async function pick(side, job) {
  const take = await loadTake(job.id);
  const box = $(side === "A" ? "ab-a" : "ab-b");
  box.querySelector(".take").textContent = job.request.prompt + " · " + (job.provenance.provider || "") + " · seed " + job.provenance.seed;
  box.querySelector(".take").className = "take";
  const canvas = box.querySelector("canvas");
  drawWaveform(canvas, peaks(take.channels, canvas.width));
  const ab = (studio.ab = studio.ab || {A: null, B: null, active: "A", mixer: null});
  if (ab.mixer) ab.mixer.stop();
  ab[side] = job.id;
  ab.mixer = ab.A && ab.B ? new Mixer([studio.takes[ab.A].buffer, studio.takes[ab.B].buffer]) : null;
  $("ab-play").disabled = $("ab-switch").disabled = !ab.mixer;
  hear(ab.active);
}
function hear(side) {
  const ab = studio.ab;
  ab.active = side;
  if (ab.mixer) ab.mixer.set(side === "A" ? [1, 0] : [0, 1]);
  $("ab-a").classList.toggle("active", side === "A");
  $("ab-b").classList.toggle("active", side === "B");
  $("ab-hearing").textContent = ab.mixer ? "hearing " + side : "";
}

// --- running a job ---
async function poll(id) {
  while (current === id) {
    const r = await api("/v1/generations/" + id + "?wait=1");
    const job = await r.json();
    if (job.progress) progress(job.progress);
    else $("phase").textContent = job.status;
    if (await ended(id, job)) return;
  }
}
function progress(p) {
  $("phase").textContent = p.phase;
  $("bar").max = p.total;
  $("bar").value = p.done;
}
async function ended(id, job) {
  if (job.status === "succeeded") {
    $("status").hidden = true;
    await guarded(show)(id, job);
    loadHistory();
    return true;
  }
  if (job.status === "cancelled") { // the user's own doing: said in the status line, not as an error
    $("phase").textContent = "cancelled";
    $("bar").value = 0;
    $("cancel").hidden = true;
    loadHistory();
    return true;
  }
  if (job.status === "failed") {
    $("status").hidden = true;
    showError(job.error ? {error: job.error} : job.status);
    loadHistory();
    return true;
  }
  return false;
}
// What the page has heard of a streamed job (read by the tests): when audio first played, how much, when it ended.
window.soundforgeStream = null;
async function listen(id, ctx) {
  // fetch (not <audio src>) so the bearer token goes along; the open-ended WAV is played through Web Audio,
  // each piece scheduled right after the one before.
  const heard = (window.soundforgeStream = {id, firstAudioAt: null, seconds: 0, endedAt: null});
  const r = await api("/v1/generations/" + id + "/stream");
  if (!r.ok || !r.body) return;
  const reader = r.body.getReader();
  let pending = new Uint8Array(0), channels = 0, rate = 0, when = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    const joined = new Uint8Array(pending.length + value.length);
    joined.set(pending); joined.set(value, pending.length);
    pending = joined;
    if (!channels) {
      if (pending.length < 44) continue;
      const head = new DataView(pending.buffer, pending.byteOffset, 44);
      channels = head.getUint16(22, true); rate = head.getUint32(24, true); pending = pending.slice(44);
    }
    const usable = pending.length - (pending.length % (2 * channels));
    if (!usable) continue;
    const pcm = new Int16Array(pending.slice(0, usable).buffer);
    pending = pending.slice(usable);
    const frames = usable / (2 * channels), buffer = ctx.createBuffer(channels, frames, rate);
    for (let c = 0; c < channels; c++) {
      const out = buffer.getChannelData(c);
      for (let i = 0; i < frames; i++) out[i] = pcm[i * channels + c] / 32768;
    }
    const source = ctx.createBufferSource();
    source.buffer = buffer; source.connect(ctx.destination);
    when = Math.max(when, ctx.currentTime + 0.05); source.start(when); when += frames / rate;
    if (heard.firstAudioAt === null) { heard.firstAudioAt = performance.now(); $("listening").hidden = false; }
    heard.seconds += frames / rate;
  }
}
async function follow(id) {
  // Server-Sent Events read through fetch, for the same reason: progress, then the job's final record.
  const r = await api("/v1/generations/" + id + "/events");
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffered += value;
    let cut;
    while ((cut = buffered.indexOf("\n\n")) >= 0) {
      const lines = buffered.slice(0, cut).split("\n");
      buffered = buffered.slice(cut + 2);
      const kind = lines.find((l) => l.startsWith("event: ")).slice(7);
      const data = JSON.parse(lines.find((l) => l.startsWith("data: ")).slice(6));
      if (kind === "progress") progress(data);
      if (kind === "end") {
        if (window.soundforgeStream && window.soundforgeStream.id === id) window.soundforgeStream.endedAt = performance.now();
        await ended(id, data);
        return;
      }
    }
  }
}
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  context().resume(); // inside the click: the browser lets it play
  $("error").hidden = true;
  const request = readRequest();
  const submit = (stream) => api("/v1/generations", {method: "POST", body: JSON.stringify({request, provider: $("provider").value, stream})});
  // Listened to while it is made where the server can stream it; a request it cannot stream (a provider that
  // does not, stems, loudness...) is refused as a stream with a 422 and submitted again as a plain job.
  let r = await submit(true), body = await r.json();
  const streamed = r.ok;
  if (r.status === 422) { r = await submit(false); body = await r.json(); }
  if (!r.ok) return showError(body);
  current = body.id;
  $("status").hidden = false;
  $("cancel").hidden = false;
  $("bar").removeAttribute("value");
  loadHistory();
  if (streamed) { listen(body.id, audio); follow(body.id); } else poll(body.id);
});
$("cancel").addEventListener("click", async () => {
  if (current) await api("/v1/generations/" + current, {method: "DELETE"});
});
$("provider").addEventListener("change", buildForm);
$("token").addEventListener("change", () => { loadProviders(); loadHistory(); });
$("sections").addEventListener("click", (ev) => { if (ev.target.dataset.section) insertSection(ev.target.dataset.section); });
$("instrumental").addEventListener("change", () => { $("lyrics").disabled = $("instrumental").checked; });
$("ab-play").addEventListener("click", () => { context().resume(); studio.ab.mixer.play(); hear(studio.ab.active); });
$("ab-switch").addEventListener("click", () => hear(studio.ab.active === "A" ? "B" : "A"));
$("ab-stop").addEventListener("click", () => { if (studio.ab && studio.ab.mixer) studio.ab.mixer.stop(); });
$("stems-play").addEventListener("click", () => { context().resume(); studio.stems.mixer.play(); });
$("stems-stop").addEventListener("click", () => studio.stems && studio.stems.mixer.stop());
$("key").append(new Option("any", ""), ...KEYS.flatMap((k) => [new Option(k + " major"), new Option(k + " minor")]));
loadProviders();
loadHistory();
