"""Signs of life for long work: a line per stage, a bar on a terminal, plain lines elsewhere.

One home for progress reporting: ``repens demo`` announces its stages through
:class:`Stages`, and the estimators' ``verbose=1`` training bar is the skorch
callback :class:`StepProgress`. Both draw a tqdm bar (with an ETA) only where a
person watches - a terminal or a notebook - and write plain lines otherwise, so a
CI log or a piped file never fills with carriage-return bar garbage.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from skorch.callbacks import Callback

LINE_INTERVAL = 30.0  # seconds between the plain progress lines written to a log


def interactive(stream=None):
    """Whether ``stream`` (default: stderr, where bars go) is watched: a terminal or a notebook."""
    stream = sys.stderr if stream is None else stream
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _Lines:
    """A bar's interface for a log: a plain line at most every ``interval`` seconds."""

    def __init__(self, total, desc, unit, initial=0, interval=LINE_INTERVAL, stream=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval, self.stream = interval, stream
        self._start = self._last = time.perf_counter()
        self._initial = initial
        self._postfix = ""

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if self.interval is not None and now - self._last >= self.interval:
            self._last = now
            print(self._line(now), file=self.stream or sys.stderr, flush=True)

    def set_postfix_str(self, text, refresh=True):
        self._postfix = text

    def _line(self, now):
        elapsed = now - self._start
        done = self.n - self._initial
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}"
        if self.total:
            line += f" ({100 * self.n / self.total:.0f} %)"
        line += f", {_duration(elapsed)} elapsed"
        if self.total and done > 0:
            line += f", about {_duration(elapsed / done * (self.total - self.n))} left"
        return f"{line}{', ' + self._postfix if self._postfix else ''}"

    def close(self):
        pass


def progress_bar(total, desc, *, unit="it", initial=0, interval="default", leave=False):
    """A tqdm bar with an ETA on a terminal; elsewhere plain lines every ``interval`` s.

    ``interval="default"`` is :data:`LINE_INTERVAL` (read at the call, so tests
    can shorten it).

    ``interval=None`` makes the plain version silent (a caller that logs its own
    stages). Both have ``update``, ``set_postfix_str`` and ``close``.
    """
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True
        )
    interval = LINE_INTERVAL if interval == "default" else interval
    return _Lines(total, desc, unit, initial=initial, interval=interval)


def write(text):
    """Print a line to stdout without tearing an open bar (``tqdm.write``)."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


class Stages:
    """Numbered stages, each announced by a line, timed, and with a bar on a terminal.

    Parameters
    ----------
    n_stages : int
        How many stages will run (the ``[i/n]`` of each line).

    Examples
    --------
    >>> stages = Stages(2)
    >>> with stages.stage("embed the zoo", total=3) as bar:  # doctest: +ELLIPSIS
    ...     for _ in range(3):
    ...         bar.update()
    [1/2] embed the zoo
      (... s wall, ... s CPU)
    """

    def __init__(self, n_stages):
        self.n_stages = n_stages
        self.done = 0
        self.timings = []  # (title, wall s, CPU s)

    @contextmanager
    def stage(self, title, total=None, unit="step"):
        """Announce a stage, yield its bar (``update()`` per step), then say what it cost."""
        self.done += 1
        write(f"[{self.done}/{self.n_stages}] {title}")
        wall, cpu = time.perf_counter(), time.process_time()
        bar = progress_bar(total, title.split(":")[0], unit=unit, interval=None)
        try:
            yield bar
        finally:
            bar.close()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.timings.append((title, wall, cpu))
        write(f"  ({wall:.1f} s wall, {cpu:.1f} s CPU)")


class StepProgress(Callback):
    """skorch callback: one bar over every optimiser step of a fit, with the loss and an ETA.

    skorch's ``ProgressBar`` restarts each epoch, so a 200-epoch run never says
    when it ends; this bar spans the whole run (``total_steps``) and starts at
    the steps already in the history (a resumed checkpoint). Plain lines every
    30 s where stderr is not a terminal.

    Parameters
    ----------
    total_steps : int
        Optimiser steps of the whole run.
    desc : str, default="training"
        The bar's label.
    """

    def __init__(self, total_steps, desc="training"):
        self.total_steps = total_steps
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        done = sum(
            row.get("train_batch_count", len(row["batches"]))
            for row in net.history
            if "train_loss" in row
        )
        self.bar_ = progress_bar(self.total_steps, self.desc, unit="step", initial=done)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        self.bar_.update(1)
        loss = net.history[-1, "batches", -1].get("train_loss")
        if loss is not None:
            self.bar_.set_postfix_str(f"loss {loss:.4f}", refresh=False)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("bar_", None)  # an open tqdm bar does not pickle
        return state
