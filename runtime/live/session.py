"""One live session: the page's frames in, rows out, the CSV at the end.

Frames go into a ``LatestSlot`` as they arrive (the WebSocket never waits
for the model); a scoring thread takes them at an even stride
(``sources/latest.py``) and pushes them through the one scoring pipeline
(``AUDetector.scoring``), sending each final row to the page.  ``stop``
closes the slot; the thread then finishes the windows, settles the table
and writes it with ``FrameTable.write_csv``: the session's CSV has
``mdhr-run``'s columns, and its timestamps are the page's capture times
(seconds from the first frame scored)."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mdhr_runtime.backends.sessions import model_calls_stopped
from mdhr_runtime.live.frames import SentFrame, decode_rgb
from mdhr_runtime.live.lsl import AUOutlet
from mdhr_runtime.pipeline import Scoring
from mdhr_runtime.sources.latest import LatestSlot, PacedFrames
from mdhr_runtime.windows.multiface import FaceRow

log = logging.getLogger(__name__)
RECEIVED_KEPT = 16384  # arrival times kept for the LSL outlet (the page's last this many frames)
NUMBERS_KEPT = 256  # taken frame -> page frame number, for the last this many frames (rows are final well before)


@dataclass(frozen=True)
class LiveOptions:
    windows: str
    hop: int | None
    faces: str
    min_face: int


class LiveSession:
    """Score what ``put`` receives until ``stop``; ``send`` gets each message
    for the page (called from the scoring thread)."""

    def __init__(self, detector, options: LiveOptions, send: Callable[[dict], None], csv_path: Path,
                 outlet: AUOutlet | None = None):
        self.scoring: Scoring = detector.scoring(options.windows, options.hop, options.faces,
                                                 min_face=options.min_face, live=True)
        self.send, self.csv_path = send, csv_path
        self.slot: LatestSlot[SentFrame] = LatestSlot()
        self.paced = PacedFrames(self.slot, decode_rgb)
        self.numbers: dict[int, int] = {}  # taken frame index -> the page's frame number
        self.outlet = outlet  # the Lab Streaming Layer outlet (--lsl), if any
        self.received: dict[int, float] = {}  # the page's frame number -> time.monotonic() at arrival
        self.last_captured = -1.0
        self.started = time.monotonic()
        self.done = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._score, name="mdhr-live-scoring", daemon=True)
        self._thread.start()

    @property
    def table(self):
        return self.scoring.table

    def put(self, frame: SentFrame) -> bool:
        """Keep the page's newest frame; False (dropped) when its capture time
        goes back."""
        if frame.captured_ms <= self.last_captured:
            return False
        self.last_captured = frame.captured_ms
        if self.outlet is not None:
            self.received[frame.number] = time.monotonic()
            self.received.pop(frame.number - RECEIVED_KEPT, None)  # the page numbers the frames it sends 0, 1, 2, ...
        self.slot.put(frame.captured_ms / 1000.0, frame)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """No more frames; True once the table is final and its CSV written."""
        self.slot.close()
        return self.done.wait(timeout)

    def _score(self) -> None:
        try:
            for frame in self.paced:
                self.numbers[frame.index] = self.paced.taken.arrival.payload.number
                self.numbers.pop(frame.index - NUMBERS_KEPT, None)
                self._send_rows(self.scoring.push(frame))
            self._send_rows(self.scoring.finish())
            self.scoring.settle()
            self.table.write_csv(self.csv_path)
            self.send({"type": "stopped", "rows": len(self.table), "frames": self.paced.count,
                       "skipped": self.paced.skipped})
        except Exception as error:  # the page says it; the server goes on for the next session
            if model_calls_stopped():
                self.error = "the server is stopping"  # a signal ended the model's calls: no failure
                return
            log.exception("live session failed")
            self.error = f"{type(error).__name__}: {error}"
            self.send({"type": "error", "message": f"scoring stopped: {self.error}"})
        finally:
            self.done.set()

    def _send_rows(self, rows: list[FaceRow]) -> None:
        elapsed = time.monotonic() - self.started
        work = self.paced.pacer.work
        messages = [self._row(face_id, row) for face_id, row in rows]
        if self.outlet is not None:
            for row in messages:
                self.outlet.push(row["face_id"], row["scores"], self.received.get(row["number"], time.monotonic()),
                                 len(self.table.au_names))
        self.send({"type": "rows", "rows": messages,
                   "taken": self.paced.count, "skipped": self.paced.skipped, "stride": self.paced.stride,
                   "fps": round(self.paced.count / elapsed, 2) if elapsed > 0 else 0.0,
                   "work_ms": None if work is None else round(1e3 * work, 1)})

    def _row(self, face_id: int | None, row) -> dict:
        frame, face = row.frame, row.frame.face
        return {"frame": frame.index + 1, "number": self.numbers.get(frame.index), "face_id": face_id,
                "timestamp": round(frame.timestamp, 3), "success": bool(face.success),
                "box": [round(float(v), 1) for v in face.box] if face.success and face.box else None,
                "scores": None if row.scores is None else [_number(s) for s in row.scores]}


def _number(value) -> float | None:
    """A JSON-safe score (a broken model's NaN becomes null, as in the JSON writer)."""
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None
