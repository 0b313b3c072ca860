"""Whether a video was read to its end, judged from its presentation
timeline rather than from a frame count.

A container's frame count is not the number of frames a player shows: an
edit list hides priming samples (the count is larger), Matroska and many
streams store no count (OpenCV then guesses duration x rate), and a
variable frame rate makes that guess wrong.  So the verdict rests on two
facts only:

* the decoder (or demuxer) reported an error: the file is damaged;
* the end of the last presented frame (its time plus its duration) falls
  short of the end the container declares for the video stream by more
  than two frame intervals: decoding stopped early (a cut file).

Where the container declares no duration for the video stream, only the
first fact can be known.  (An AVI's declared end is its header's frame
count times the frame interval: see ``video.probe``.)
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

# Frames of slack at the end: a last frame whose duration the container
# rounds, or one frame the muxer's edit list leaves out, is not a cut.
SLACK_FRAMES = 2.0
# Timestamps are compared in seconds; this absorbs time-base rounding.
EPSILON_S = 1e-3


@dataclass
class Timeline:
    """What one pass of decoding saw.  ``declared_end`` is the end time (in
    the stream's clock, seconds) the container gives for the video stream,
    None when it gives none; ``nominal_interval`` is 1 / the header's rate."""

    declared_end: float | None
    nominal_interval: float
    last_time: float | None = None
    last_duration: float = 0.0
    intervals: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    first_error_time: float | None = None

    def frame(self, time: float, duration: float) -> None:
        """A presented frame at ``time`` s lasting ``duration`` s (0: unknown)."""
        if self.last_time is not None and time > self.last_time and len(self.intervals) < 1000:
            self.intervals.append(time - self.last_time)  # a sample is enough for the typical interval
        self.last_time, self.last_duration = time, duration

    def error(self, message: str) -> None:
        """The decoder or demuxer failed on a packet."""
        self.errors += 1
        if self.errors == 1:
            self.first_error, self.first_error_time = message, self.last_time

    @property
    def interval(self) -> float:
        """The typical frame interval: the median seen, else the header's."""
        return statistics.median(self.intervals) if self.intervals else self.nominal_interval

    @property
    def presented_end(self) -> float | None:
        if self.last_time is None:
            return None
        return self.last_time + (self.last_duration if self.last_duration > 0 else self.interval)

    def shortfall(self, start: float) -> str:
        """'' when the video was read to its end, else one clause saying
        why not (times in seconds from ``start``, the first frame's time)."""
        reasons = []
        if self.errors:
            where = "" if self.first_error_time is None else f" at {self.first_error_time - start:.2f} s"
            reasons.append(f"decoding failed{where} ({self.first_error}"
                           + (f", and {self.errors - 1} more time(s)" if self.errors > 1 else "") + ")")
        end = self.presented_end
        if self.declared_end is not None and end is not None:
            slack = SLACK_FRAMES * max(self.interval, self.last_duration) + EPSILON_S
            if self.declared_end - end > slack:
                reasons.append(f"decoding stopped at {end - start:.2f} s of the {self.declared_end - start:.2f} s "
                               "the container declares")
        return "; ".join(reasons)
