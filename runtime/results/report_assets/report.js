// MDHR report: paints the heat-map timelines from the embedded data and keeps
// them and the video in step (playing moves the cursor, a click seeks).
// Everything it needs is in this file; it fetches nothing.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("mdhr-data").textContent);
  var times = data.times;
  var columns = times.length;
  var video = document.getElementById("video");
  var current = 0;

  function bytes(base64) {
    var raw = atob(base64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  // The embedded video becomes a Blob URL: seeking in it works like in a file.
  var embedded = document.getElementById("mdhr-video");
  if (video && embedded) {
    video.src = URL.createObjectURL(new Blob([bytes(embedded.textContent.trim())], {type: "video/mp4"}));
  }

  function mix(a, b, f) {
    return [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); });
  }
  var ABSENT = [217, 217, 217];
  // Inactive scores in blues (dark at -1), active ones in oranges: the
  // threshold is where the hue changes.
  function scoreColour(value) {
    var score = value / 254 * 2 - 1;
    if (score >= data.threshold) {
      return mix([253, 174, 107], [166, 54, 3], (score - data.threshold) / Math.max(1 - data.threshold, 1e-6));
    }
    return mix([8, 48, 107], [198, 219, 239], (score + 1) / Math.max(data.threshold + 1, 1e-6));
  }
  // Differences: white (none) to purple (1 or more).
  function diffColour(value) {
    return mix([255, 255, 255], [84, 39, 143], value / 254);
  }

  // Quality flags: red where flagged, green where not.
  function flagColour(value) {
    return value > 0 ? [215, 48, 31] : [161, 217, 155];
  }

  function paint(canvas) {
    var cells = bytes(canvas.dataset.cells);
    var rows = canvas.height;
    var colour = canvas.dataset.kind === "diff" ? diffColour : canvas.dataset.kind === "flag" ? flagColour : scoreColour;
    var context = canvas.getContext("2d");
    var image = context.createImageData(columns, rows);
    for (var i = 0; i < rows * columns; i++) {
      var rgb = cells[i] === 255 ? ABSENT : colour(cells[i]);
      image.data[4 * i] = rgb[0];
      image.data[4 * i + 1] = rgb[1];
      image.data[4 * i + 2] = rgb[2];
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    canvas._cells = cells;
  }

  // The last column whose first frame starts at or before t.
  function columnAt(t) {
    var low = 0, high = columns - 1;
    while (low < high) {
      var middle = Math.ceil((low + high) / 2);
      if (times[middle] <= t + 1e-4) low = middle; else high = middle - 1;
    }
    return low;
  }

  function moveCursor(column) {
    current = column;
    var left = ((column + 0.5) / columns * 100) + "%";
    document.querySelectorAll(".cursor").forEach(function (cursor) { cursor.style.left = left; });
    var label = document.getElementById("cursor-label");
    if (label) {
      var first = column * data.frames_per_column + 1;
      label.textContent = "frame " + (data.frames_per_column > 1 ? first + "-" + (first + data.frames_per_column - 1) : first)
        + " at " + times[column].toFixed(3) + " s";
    }
  }

  function columnOf(canvas, event) {
    var rect = canvas.getBoundingClientRect();
    var column = Math.floor((event.clientX - rect.left) / rect.width * columns);
    return Math.min(columns - 1, Math.max(0, column));
  }

  document.querySelectorAll("canvas.timeline, canvas.flags").forEach(function (canvas) {
    paint(canvas);
    canvas.addEventListener("click", function (event) {
      var column = columnOf(canvas, event);
      moveCursor(column);
      // A millisecond into the frame, so rounding never lands on the one before.
      if (video) video.currentTime = times[column] + 0.001;
    });
    canvas.addEventListener("mousemove", function (event) {
      var column = columnOf(canvas, event);
      var rect = canvas.getBoundingClientRect();
      var row = Math.min(canvas.height - 1, Math.floor((event.clientY - rect.top) / rect.height * canvas.height));
      var value = canvas._cells[row * columns + column];
      var names = canvas.dataset.rows.split(",");
      var kind = canvas.dataset.kind;
      var shown = value === 255 ? "no face" : kind === "flag" ? (value > 0 ? "flagged" : "not flagged")
        : kind === "diff" ? "difference " + (value / 254).toFixed(2) : "score " + (value / 254 * 2 - 1).toFixed(2);
      canvas.title = names[row] + ", " + times[column].toFixed(2) + " s: " + shown;
    });
  });

  if (video) {
    var following = false;
    var follow = function () {
      moveCursor(columnAt(video.currentTime));
      if (!video.paused && !video.ended) window.requestAnimationFrame(follow); else following = false;
    };
    video.addEventListener("play", function () {
      if (!following) { following = true; window.requestAnimationFrame(follow); }
    });
    ["seeked", "timeupdate", "pause"].forEach(function (name) {
      video.addEventListener(name, function () { moveCursor(columnAt(video.currentTime)); });
    });
  }
  moveCursor(0);

  // For scripts driving the page (the tests): the timeline's geometry and state.
  window.mdhrReport = {
    columns: columns,
    framesPerColumn: data.frames_per_column,
    times: times,
    columnAt: columnAt,
    cursorColumn: function () { return current; }
  };
})();
