"""Progress with an ETA: Keras's progress bar on a terminal, one plain line per 10 % in logs."""

import sys
import time

import keras


def _clock(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def watched(stream=None):
    """Whether a person is likely watching ``stream`` (default stdout): a terminal, or a Jupyter /
    IPython kernel. What ``progress="auto"`` means (Keras's ``verbose="auto"`` convention)."""
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def resolve(progress):
    """``progress`` as a bool: True / False as given, ``"auto"`` :func:`watched`.

    Raises:
        ValueError: anything else."""
    if progress == "auto":
        return watched()
    if isinstance(progress, (bool, int)) and progress in (0, 1):
        return bool(progress)
    raise ValueError(f"progress={progress!r}: give True, False or 'auto'")


class Progress:
    def __init__(self, total, unit="step", label=None, enabled=True, stream=None):
        """``unit``: what is counted ("step", "class"); printed as-is in the bar, pluralized in logs."""
        self.total, self.unit, self.enabled = int(total), unit, enabled
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.every = max(1, self.total // 10)
        self.start = time.perf_counter()
        if enabled and label:
            print(label, file=self.stream, flush=True)
        self.bar = keras.utils.Progbar(self.total, unit_name=unit) if enabled and self.interactive else None

    def update(self, done, **metrics):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done, list(metrics.items()))
            return
        if done % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        values = " - ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
        timing = f"ETA {_clock(eta)}" if done < self.total else f"done in {_clock(elapsed)}"
        plural = self.unit + ("es" if self.unit.endswith(("s", "x", "ch")) else "s")
        print(f"{done}/{self.total} {plural} - {timing} - {elapsed / max(done, 1):.3g}s/{self.unit}"
              + (f" - {values}" if values else ""), file=self.stream, flush=True)
