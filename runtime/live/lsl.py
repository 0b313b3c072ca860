"""The AU stream as a Lab Streaming Layer outlet (``mdhr-live --lsl``; the
``lsl`` extra: pylsl, whose wheel carries liblsl), so lab recordings can put
it on one clock with other signals.

One sample per row: channel ``face_id`` (-1 without one, ``--faces
largest``), then one channel per AU (its score; NaN where no face was
found).  A sample's time is LSL's clock when the frame reached the server
(the row is pushed later, once final; its age is subtracted), so it lines
up with other streams to within the page's encoding and sending time."""
from __future__ import annotations

import math
import os
import time
from typing import Sequence


def lsl():
    """pylsl, imported when an outlet is made (the lsl extra)."""
    import pylsl

    return pylsl


class AUOutlet:
    def __init__(self, au_names: Sequence[str], name: str = "mdhr-live"):
        pylsl = lsl()
        labels = ["face_id", *au_names]
        self.source_id = f"mdhr-live-{os.getpid()}-{id(self)}"
        info = pylsl.StreamInfo(name, "AU", len(labels), pylsl.IRREGULAR_RATE, "float32", self.source_id)
        channels = info.desc().append_child("channels")
        for label in labels:
            channels.append_child("channel").append_child_value("label", label)
        self.clock = pylsl.local_clock
        self.outlet = pylsl.StreamOutlet(info)

    def push(self, face_id: int | None, scores: Sequence[float | None] | None, received: float, count: int) -> None:
        """One row; ``received``: ``time.monotonic()`` when its frame arrived."""
        values = [math.nan if s is None else float(s) for s in scores] if scores is not None else [math.nan] * count
        stamp = self.clock() - (time.monotonic() - received)
        self.outlet.push_sample([-1.0 if face_id is None else float(face_id), *values], stamp)
