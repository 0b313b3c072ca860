"use strict";
// mdhr-live's page: the camera's frames to the server (newest only: a frame
// is sent only when the previous one has gone), rows back; bars, boxes, a
// scrolling timeline, frames/s and the latency from capture to scores.
(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token") || "";
  const MAX_WIDTH = 640, QUALITY = 0.8, MAX_BUFFERED = 256 * 1024, KEPT = 4000, LANE_LABEL = 60, COLUMN = 3;
  const state = {
    hello: null, running: false, stopped: false, rowsReceived: 0, framesSent: 0, framesNotSent: 0,
    latencies: [], latencyTimes: [], rows: [], faces: new Set(), lastScores: null, scoreChanges: 0, stride: 1, fps: 0,
    errors: [], csvReady: false,
  };
  window.mdhrLive = state;
  const sentAt = new Map();   // the page's frame number -> performance.now() at capture
  const capture = document.createElement("canvas");
  const picture = $("picture"), video = $("camera"), timeline = $("timeline");
  let ws = null, stream = null, t0 = 0, number = 0, encoding = false, lastBoxes = [], lastFrame = -1;

  function connect() {
    ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => receive(JSON.parse(event.data));
    ws.onclose = () => { setState("disconnected from the server"); state.running = false; };
    ws.onerror = () => state.errors.push("websocket error");
  }

  function setState(text) { $("state").textContent = text; state.text = text; }

  function receive(message) {
    if (message.type === "hello") {
      state.hello = message;
      $("model").textContent = `${message.dataset}${message.untrained ? " (UNTRAINED: scores mean nothing)" : ""}` +
        ` · faces: ${message.faces} · windows: ${message.windows}`;
      $("start").disabled = false;
      setState("ready: press Start");
    } else if (message.type === "started") {
      state.running = true;
      setState("scoring");
      requestFrame();
    } else if (message.type === "rows") {
      onRows(message);
    } else if (message.type === "stopped") {
      state.stopped = true; state.csvReady = true;
      const link = $("download");
      link.href = `session.csv?token=${encodeURIComponent(token)}`;
      link.classList.remove("disabled");
      setState(`stopped: ${message.rows} rows (${message.frames} frames scored); the CSV is ready`);
      $("start").disabled = false;
    } else if (message.type === "error") {
      state.errors.push(message.message);
      setState(message.message);
    }
  }

  async function start() {
    $("start").disabled = true; $("download").classList.add("disabled");
    state.stopped = false; state.csvReady = false;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
    } catch (error) {
      setState(`no camera: ${error.message}`); $("start").disabled = false; return;
    }
    video.srcObject = stream;
    await video.play();
    t0 = performance.now(); number = 0; sentAt.clear(); lastFrame = -1;
    state.latencies = []; state.latencyTimes = [];
    resetTimeline();
    $("stop").disabled = false;
    ws.send(JSON.stringify({ type: "start" }));
  }

  function stop() {
    state.running = false;
    $("stop").disabled = true;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    ws.send(JSON.stringify({ type: "stop" }));
    setState("finishing the last windows…");
  }

  function requestFrame() {
    if (!state.running) return;
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
    else requestAnimationFrame(onFrame);
  }

  function onFrame() {
    if (!state.running) return;
    const scale = Math.min(1, MAX_WIDTH / (video.videoWidth || MAX_WIDTH));
    const w = Math.round((video.videoWidth || MAX_WIDTH) * scale), h = Math.round((video.videoHeight || 480) * scale);
    if (capture.width !== w) { capture.width = w; capture.height = h; picture.width = w; picture.height = h; }
    capture.getContext("2d").drawImage(video, 0, 0, w, h);
    drawPicture();
    // Newest only: while the last frame is still being encoded or sent, this one is not sent
    // (the server keeps only the newest frame too, and takes them at its even stride).
    if (!encoding && ws.bufferedAmount < MAX_BUFFERED) send(performance.now());
    else state.framesNotSent += 1;
    requestFrame();
  }

  function send(capturedAt) {
    encoding = true;
    const n = number++;
    capture.toBlob(async (blob) => {
      try {
        if (!blob || !state.running) return;
        const body = await blob.arrayBuffer();
        const message = new Uint8Array(12 + body.byteLength);
        const header = new DataView(message.buffer);
        header.setUint32(0, n, true);
        header.setFloat64(4, capturedAt - t0, true);
        message.set(new Uint8Array(body), 12);
        sentAt.set(n, capturedAt);
        if (sentAt.size > 600) sentAt.delete(sentAt.keys().next().value);
        ws.send(message);
        state.framesSent += 1;
      } finally { encoding = false; }
    }, "image/jpeg", QUALITY);
  }

  function onRows(message) {
    const now = performance.now();
    state.stride = message.stride; state.fps = message.fps;
    $("fps").textContent = message.fps.toFixed(1);
    $("stride").textContent = message.stride;
    const frames = new Map();
    for (const row of message.rows) {
      state.rowsReceived += 1;
      state.rows.push(row);
      if (state.rows.length > KEPT) state.rows.shift();
      if (row.success && row.face_id !== null) state.faces.add(row.face_id);
      if (row.success && row.face_id === null) state.faces.add(0);
      if (!frames.has(row.frame)) frames.set(row.frame, []);
      frames.get(row.frame).push(row);
    }
    for (const [frame, rows] of frames) {
      const first = rows[0];
      if (first.number !== null && sentAt.has(first.number) && frame > lastFrame) {
        const ms = now - sentAt.get(first.number);
        state.latencies.push(ms);
        state.latencyTimes.push(now - t0);  // when, in ms from Start
        if (state.latencies.length > 100000) { state.latencies.shift(); state.latencyTimes.shift(); }
        $("latency").textContent = ms.toFixed(0);
      }
      lastFrame = Math.max(lastFrame, frame);
      showFrame(rows);
    }
    $("rows").textContent = state.rowsReceived;
    const recent = state.latencies.slice(-200).sort((a, b) => a - b);
    if (recent.length) $("latency-median").textContent = recent[Math.floor(recent.length / 2)].toFixed(0);
  }

  function showFrame(rows) {
    lastBoxes = rows.filter((r) => r.success && r.box).map((r) => ({ box: r.box, id: r.face_id }));
    const scored = rows.filter((r) => r.scores);
    for (const row of scored) updateBars(row.face_id === null ? 0 : row.face_id, row.scores);
    addColumn(scored.length ? scored.reduce((a, b) => (a.face_id ?? 0) <= (b.face_id ?? 0) ? a : b).scores : null);
    if (scored.length) {
      const scores = scored[0].scores;
      if (state.lastScores && scores.some((s, i) => s !== state.lastScores[i])) state.scoreChanges += 1;
      state.lastScores = scores;
    }
  }

  function drawPicture() {
    const g = picture.getContext("2d");
    g.drawImage(capture, 0, 0);
    g.lineWidth = 3; g.font = "14px system-ui"; g.strokeStyle = "#3cf06a"; g.fillStyle = "#3cf06a";
    for (const { box, id } of lastBoxes) {
      g.strokeRect(box[0], box[1], box[2], box[3]);
      if (id !== null) g.fillText(`face ${id}`, box[0], Math.max(14, box[1] - 4));
    }
  }

  function facePanel(id) {
    let panel = document.querySelector(`.face[data-id="${id}"]`);
    if (panel) return panel;
    panel = document.createElement("div");
    panel.className = "face"; panel.dataset.id = id;
    const title = document.createElement("h2");
    title.textContent = state.hello.faces === "all" ? `face ${id}` : "AU scores";
    panel.appendChild(title);
    const mark = `${((state.hello.threshold + 1) / 2) * 100}%`;
    for (const au of state.hello.aus) {
      const bar = document.createElement("div");
      bar.className = "bar"; bar.dataset.au = au;
      bar.innerHTML = `<span class="name"></span><div class="track"><div class="fill"></div>` +
        `<div class="mark" title="threshold"></div></div><span class="value">–</span>`;
      bar.querySelector(".name").textContent = au;
      bar.querySelector(".mark").style.left = mark;
      panel.appendChild(bar);
    }
    $("bars").appendChild(panel);
    return panel;
  }

  function updateBars(id, scores) {
    const panel = facePanel(id);
    panel.querySelectorAll(".bar").forEach((bar, i) => {
      const s = scores[i];
      const known = s !== null && Number.isFinite(s);
      bar.querySelector(".fill").style.width = known ? `${Math.max(0, Math.min(1, (s + 1) / 2)) * 100}%` : "0%";
      bar.querySelector(".value").textContent = known ? s.toFixed(3) : "–";
      bar.classList.toggle("active", known && s >= state.hello.threshold);
    });
  }

  function resetTimeline() {
    const g = timeline.getContext("2d");
    g.fillStyle = "#000"; g.fillRect(0, 0, timeline.width, timeline.height);
    if (!state.hello) return;
    const lane = timeline.height / state.hello.aus.length;
    g.fillStyle = "#ccc"; g.font = `${Math.min(14, lane - 2)}px system-ui`; g.textBaseline = "middle";
    state.hello.aus.forEach((au, i) => g.fillText(au, 4, (i + 0.5) * lane));
  }

  function addColumn(scores) {
    if (!state.hello) return;
    const g = timeline.getContext("2d"), W = timeline.width, H = timeline.height;
    g.drawImage(timeline, LANE_LABEL + COLUMN, 0, W - LANE_LABEL - COLUMN, H, LANE_LABEL, 0, W - LANE_LABEL - COLUMN, H);
    const lane = H / state.hello.aus.length, x = W - COLUMN;
    state.hello.aus.forEach((_, i) => {
      const s = scores ? scores[i] : null;
      if (s === null || !Number.isFinite(s)) g.fillStyle = "#333";
      else if (s >= state.hello.threshold) g.fillStyle = "#f06a3c";
      else { const v = Math.round(40 + 150 * Math.max(0, (s + 1) / 2)); g.fillStyle = `rgb(${v * 0.3},${v * 0.5},${v})`; }
      g.fillRect(x, i * lane + 1, COLUMN, lane - 2);
    });
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  connect();
})();
