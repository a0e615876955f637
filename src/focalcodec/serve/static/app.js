// The page of `focalcodec serve`: microphone -> server -> speakers, with figures.
// Protocol (docs/serve.md): a JSON start message, then binary frames whose first byte
// is their kind. No build step and nothing from elsewhere: plain modules.

const KIND = { audio: 1, header: 2, packet: 3, event: 4, end: 5 };
const $ = (id) => document.getElementById(id);
const stats = {   // read by the browser test
  connected: false, ready: null, packets: 0, tokens: 0, packetBytes: 0,
  sentSamples: 0, audioSamples: 0, played: 0, latencies: [], steps: [], draws: 0,
  errors: [],
};
window.fcStats = stats;

let models = [];
let session = null;

// -- resampling in the page: windowed-sinc low-pass (when going down), then linear ---

function lowpass(taps, cutoff) {
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1));
    h[i] = sinc * hann;
    sum += h[i];
  }
  return h.map((v) => v / sum);
}

class Resampler {
  constructor(from, to) {
    this.step = from / to;
    this.pos = 0;
    this.prev = 0;
    this.fir = from > to ? lowpass(63, (0.45 * to) / from) : null;
    this.hist = this.fir ? new Float32Array(this.fir.length - 1) : null;
  }

  filter(x) {
    if (!this.fir) return x;
    const n = this.hist.length;
    const buf = new Float32Array(n + x.length);
    buf.set(this.hist);
    buf.set(x, n);
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      let acc = 0;
      for (let k = 0; k <= n; k++) acc += this.fir[k] * buf[i + n - k];
      y[i] = acc;
    }
    this.hist = buf.slice(buf.length - n);
    return y;
  }

  process(x) {
    const f = this.filter(x);
    const n = f.length;
    const out = [];
    let p = this.pos;
    while (p < n) {   // buffer position p: 0 is the last sample of the previous call
      const i = Math.floor(p);
      const a = i === 0 ? this.prev : f[i - 1];
      const frac = p - i;
      out.push(a + (f[i] - a) * frac);
      p += this.step;
    }
    this.pos = p - n;
    if (n) this.prev = f[n - 1];
    return Float32Array.from(out);
  }
}

// -- the .fcz packet: kind, varint count, [varint samples], bit-packed tokens, CRC ------

function varint(bytes, at) {
  let value = 0, shift = 0;
  for (;;) {
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [value, at];
  }
}

function packetTokens(bytes, bits) {
  const kind = bytes[0];
  let [count, at] = varint(bytes, 1);
  if ((kind & 0x0f) === 2) at = varint(bytes, at)[1];
  if (kind & 0x10) return { count, toks: null };  // entropy-coded: not drawn
  const toks = new Array(count);
  for (let t = 0; t < count; t++) {
    let v = 0;
    for (let b = 0; b < bits; b++) {
      const bit = t * bits + b;
      v = v * 2 + ((bytes[at + (bit >> 3)] >> (7 - (bit & 7))) & 1);
    }
    toks[t] = v;
  }
  return { count, toks };
}

// -- figures ------------------------------------------------------------------------

class Line {
  constructor(canvas, color) {
    this.c = canvas; this.g = canvas.getContext("2d"); this.color = color;
    this.values = [];
  }
  add(v) { this.values.push(v); if (this.values.length > 240) this.values.shift(); }
  draw() {
    const { c, g, values } = this;
    g.clearRect(0, 0, c.width, c.height);
    if (!values.length) return;
    const top = Math.max(...values) * 1.15 || 1;
    g.strokeStyle = "#d9dde5"; g.fillStyle = "#6b7385"; g.font = "11px sans-serif";
    g.fillText(top.toFixed(0), 2, 11);
    g.beginPath(); g.strokeStyle = this.color; g.lineWidth = 2;
    values.forEach((v, i) => {
      const x = (i / 239) * c.width, y = c.height - (v / top) * (c.height - 14);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

class Scroller {   // a canvas that scrolls left, new columns drawn at the right
  constructor(canvas) { this.c = canvas; this.g = canvas.getContext("2d"); }
  shift(w) {
    const { c, g } = this;
    g.drawImage(c, -w, 0);
    g.clearRect(c.width - w, 0, w, c.height);
  }
}

function drawTokens(fig, toks, bits) {
  const w = 3, rows = Math.floor((fig.c.height - 4) / bits);
  for (const tok of toks) {
    fig.shift(w);
    for (let b = 0; b < bits; b++) {
      const on = (tok >> (bits - 1 - b)) & 1;
      fig.g.fillStyle = on ? `hsl(${(tok * 47) % 360}, 60%, 40%)` : "#eef1f6";
      fig.g.fillRect(fig.c.width - w, 2 + b * rows, w - 1, rows - 1);
    }
  }
}

function fft(re, im) {   // in place, radix 2
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const c = Math.cos(ang * k), s = Math.sin(ang * k);
        const a = i + k, b = a + len / 2;
        const tr = re[b] * c - im[b] * s, ti = re[b] * s + im[b] * c;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
      }
    }
  }
}

class Spectrum {   // one half of the spectrogram canvas: 0-8 kHz of a signal
  constructor(fig, rate, half) {
    this.fig = fig; this.rate = rate; this.half = half;
    this.n = rate > 16000 ? 512 : 256;
    this.hop = Math.round(rate / 62.5);
    this.buf = [];
  }
  push(samples) {
    for (const v of samples) this.buf.push(v);
    const cols = [];
    while (this.buf.length >= this.n) {
      cols.push(this.column(this.buf.slice(0, this.n)));
      this.buf.splice(0, this.hop);
    }
    return cols;
  }
  column(frame) {
    const re = Float32Array.from(frame, (v, i) => v * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / this.n)));
    const im = new Float32Array(this.n);
    fft(re, im);
    const bins = Math.floor((8000 / this.rate) * this.n);
    return Array.from({ length: bins }, (_, k) => 10 * Math.log10(re[k] ** 2 + im[k] ** 2 + 1e-10));
  }
  draw(col, x) {
    const { fig, half } = this, h = fig.c.height / 2;
    for (let k = 0; k < col.length; k++) {
      const level = Math.max(0, Math.min(1, (col[k] + 40) / 70));
      fig.g.fillStyle = `hsl(${230 - 200 * level}, 70%, ${12 + 55 * level}%)`;
      const y = half * h + h - ((k + 1) / col.length) * h;
      fig.g.fillRect(x, y, 2, h / col.length + 1);
    }
  }
}

// -- the live session -----------------------------------------------------------------

function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function pcm16(samples) {
  const out = new Uint8Array(1 + samples.length * 2);
  out[0] = KIND.audio;
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(1 + 2 * i, Math.round(v * 32767), true);
  }
  return out;
}

async function start() {
  const model = models.find((m) => m.name === $("model").value);
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("worklet.js");
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false },
  });
  const capture = new AudioWorkletNode(ctx, "capture");
  const player = new AudioWorkletNode(ctx, "player", { outputChannelCount: [1] });
  ctx.createMediaStreamSource(mic).connect(capture);
  player.connect(ctx.destination);
  const key = $("key").value.trim();
  const protocols = ["fcz.v1"].concat(key ? [`fcz-key.${key}`] : []);
  const ws = new WebSocket(socketUrl("/v1/stream"), protocols);
  ws.binaryType = "arraybuffer";
  const rate = model.sample_rate_input;
  const figs = {
    tokens: new Scroller($("tokenfig")), spectra: new Scroller($("spectra")),
    bit: new Line($("bitfig"), "#2f6fdb"), lat: new Line($("latfig"), "#d2552d"),
    step: new Line($("stepfig"), "#2d9d5c"),
  };
  session = {
    ctx, mic, ws, capture, player, model, figs, sentAt: [],
    down: new Resampler(ctx.sampleRate, rate),
    up: new Resampler(model.sample_rate_output, ctx.sampleRate),
    specIn: new Spectrum(figs.spectra, rate, 0),
    specOut: new Spectrum(figs.spectra, model.sample_rate_output, 1),
    recent: [], pendingIn: [],
  };
  ws.onopen = () => {
    stats.connected = true;
    const voice = $("voice").value || undefined;
    ws.send(JSON.stringify({ version: 1, model: model.name, direction: "resynth",
      format: "s16le", sample_rate: rate, voice }));
    status("connected");
  };
  ws.onmessage = (event) => receive(new Uint8Array(event.data));
  ws.onclose = (event) => {
    status(event.code === 1000 ? "ended" : `closed ${event.code}: ${event.reason}`);
    if (event.code !== 1000) stats.errors.push(`${event.code} ${event.reason}`);
    stop();
  };
  capture.port.onmessage = (event) => send(event.data);
  player.port.onmessage = (event) => {
    stats.played = event.data.played;
    $("buffer").textContent = (1000 * event.data.held).toFixed(0);
  };
  $("start").disabled = true; $("stop").disabled = false;
  session.timer = setInterval(drawFigures, 250);
}

function send(samples) {
  const s = session;
  if (!s || !stats.ready || s.ws.readyState !== WebSocket.OPEN) return;
  const down = s.down.process(samples);
  if (!down.length) return;
  s.ws.send(pcm16(down));
  stats.sentSamples += down.length;
  const block = stats.ready.chunk_size;
  while ((s.sentAt.length + 1) * block <= stats.sentSamples) s.sentAt.push(performance.now());
  s.pendingIn.push(...s.specIn.push(down));
}

function receive(data) {
  const s = session;
  if (!s) return;
  const kind = data[0], body = data.subarray(1);
  if (kind === KIND.event) {
    const event = JSON.parse(new TextDecoder().decode(body));
    if (event.event === "ready") { stats.ready = event; status(`live: ${event.model}`); }
    if (event.event === "stats") { stats.steps.push(event.step_ms); s.figs.step.add(event.step_ms);
      $("step").textContent = event.step_ms.toFixed(1); $("batch").textContent = event.batch; }
    if (event.event === "error") stats.errors.push(event.message);
  } else if (kind === KIND.packet) {
    const { count, toks } = packetTokens(body, stats.ready.bits_per_token);
    stats.packets++; stats.tokens += count; stats.packetBytes += body.length;
    s.recent.push([performance.now(), body.length, count]);
    if (toks) drawTokens(s.figs.tokens, toks, stats.ready.bits_per_token);
    $("tokens").textContent = stats.tokens;
  } else if (kind === KIND.audio) {
    const pcm = new Int16Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
    const sig = Float32Array.from(pcm, (v) => v / 32768);
    stats.audioSamples += sig.length;
    s.player.port.postMessage(s.up.process(sig));
    latency(s);
    const cols = s.specOut.push(sig);
    cols.forEach((col, i) => {
      s.figs.spectra.shift(2);
      const x = s.figs.spectra.c.width - 2;
      const inCol = s.pendingIn.shift();
      if (inCol) s.specIn.draw(inCol, x);
      s.specOut.draw(col, x);
    });
  }
}

function latency(s) {
  const r = stats.ready;
  const perBlock = (r.chunk_size * r.sample_rate_output) / r.sample_rate_input;
  while ((stats.latencies.length + 1) * perBlock <= stats.audioSamples &&
         stats.latencies.length < s.sentAt.length) {
    const ms = performance.now() - s.sentAt[stats.latencies.length];
    stats.latencies.push(ms);
    s.figs.lat.add(ms);
  }
}

function drawFigures() {
  const s = session;
  if (!s || !stats.ready) return;
  const now = performance.now();
  s.recent = s.recent.filter(([t]) => now - t < 2000);
  // What went over the wire (packet framing and CRCs included), and the tokens alone.
  const bits = (8 * s.recent.reduce((a, [, n]) => a + n, 0)) / 2;
  const payload = (stats.ready.bits_per_token * s.recent.reduce((a, [, , c]) => a + c, 0)) / 2;
  s.figs.bit.add(bits);
  $("bitrate").textContent = `${bits.toFixed(0)}`;
  $("payload").textContent = payload.toFixed(0);
  $("pcmrate").textContent = (16 * s.model.sample_rate_input).toLocaleString();
  const last = stats.latencies.slice(-50).sort((a, b) => a - b);
  if (last.length) $("latency").textContent = last[Math.floor(last.length / 2)].toFixed(0);
  s.figs.bit.draw(); s.figs.lat.draw(); s.figs.step.draw();
  stats.draws++;
}

function stop() {
  const s = session;
  if (!s) return;
  session = null;
  clearInterval(s.timer);
  if (s.ws.readyState === WebSocket.OPEN) s.ws.send(new Uint8Array([KIND.end]));
  s.mic.getTracks().forEach((t) => t.stop());
  setTimeout(() => s.ctx.close(), 1500);
  $("start").disabled = false; $("stop").disabled = true;
}

function status(text) { $("status").textContent = text; }

// -- a file: encode it, offer the .fcz and its decoded audio ---------------------------

async function encodeFile() {
  const file = $("file").files[0];
  if (!file) return;
  const key = $("key").value.trim();
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  $("upstatus").textContent = "encoding...";
  const model = encodeURIComponent($("model").value);
  const fcz = await fetch(`v1/encode?model=${model}`, { method: "POST", body: file, headers });
  if (!fcz.ok) { $("upstatus").textContent = (await fcz.json()).error; return; }
  const fczBlob = await fcz.blob();
  const wav = await fetch("v1/decode", { method: "POST", body: fczBlob, headers });
  if (!wav.ok) { $("upstatus").textContent = (await wav.json()).error; return; }
  const wavBlob = await wav.blob();
  const stem = file.name.replace(/\.[^.]+$/, "");
  const seconds = Number(fcz.headers.get("x-focalcodec-seconds"));
  $("downloads").replaceChildren(link(fczBlob, `${stem}.fcz`), link(wavBlob, `${stem}.decoded.wav`));
  $("decoded").src = URL.createObjectURL(wavBlob);
  $("decoded").hidden = false;
  const kbps = ((8 * fczBlob.size) / seconds / 1000).toFixed(2);
  $("upstatus").textContent = `${file.size} bytes -> ${fczBlob.size} bytes (${kbps} kbps)`;
}

function link(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.textContent = `download ${name}`;
  return a;
}

// -- start up ---------------------------------------------------------------------------

async function loadModels() {
  const key = $("key").value.trim();
  const response = await fetch("v1/models", key ? { headers: { Authorization: `Bearer ${key}` } } : {});
  if (!response.ok) { status("give the API key, then reload the models"); return; }
  models = (await response.json()).models;
  $("model").replaceChildren(...models.map((m) => {
    const o = document.createElement("option");
    o.value = m.name; o.disabled = !m.causal;
    o.textContent = `${m.name} (${m.bitrate} bps${m.causal ? "" : ", files only"})`;
    return o;
  }));
  const live = models.find((m) => m.causal);
  if (live) $("model").value = live.name;
  fillVoices();
}

function fillVoices() {
  const model = models.find((m) => m.name === $("model").value);
  const own = document.createElement("option");
  own.value = ""; own.textContent = "own voice";
  $("voice").replaceChildren(own, ...(model ? model.voices : []).map((v) => {
    const o = document.createElement("option");
    o.value = v; o.textContent = v;
    return o;
  }));
}

$("start").onclick = () => start().catch((e) => { stats.errors.push(String(e)); status(String(e)); });
$("stop").onclick = stop;
$("model").onchange = fillVoices;
$("key").onchange = loadModels;
$("file").onchange = () => { $("encode").disabled = !$("file").files.length; };
$("encode").onclick = () => encodeFile().catch((e) => { $("upstatus").textContent = String(e); });
loadModels();
