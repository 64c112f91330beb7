"""How long loops tell a person where they are: a bar on a terminal, log lines everywhere else.

A run whose stderr is a file (``nohup``, SLURM, CI) sees no progress bar; without lines of its own it would be
silent for as long as a phase trains. :class:`Progress` is the one choice every loop of a run receives:

- ``bar``: a tqdm bar (stderr is a terminal);
- ``log``: one line on stderr when a phase starts, then whenever ``interval`` seconds (default 30) or ``every``
  steps (0: by time only) have passed since the last line, and when it ends — ``desc: step i/N (x %)``, the latest
  loss where the loop reports one, the rate in steps/s and the remaining time at that rate (ETA = (N − i)/rate);
- ``off``: nothing (``--quiet``; processes > 0 of a launch).

Loops ask ``progress.bar(range(...), desc=..., total=...)`` and get an iterator with tqdm's ``update``,
``set_postfix`` and ``close``, whatever the mode, so the loop's code is the same in all three.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TextIO

#: The modes of :class:`Progress`.
MODES: tuple[str, ...] = ("bar", "log", "off")


@dataclass(frozen=True)
class Progress:
    """What loops show (``mode``, one of :data:`MODES`), and, in ``log`` mode, at most how many seconds
    (``interval``) and steps (``every``, 0 = no step limit) pass between two lines."""

    mode: str = "off"
    interval: float = 30.0
    every: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def __bool__(self) -> bool:
        return self.mode != "off"

    @classmethod
    def choose(cls, *, quiet: bool = False, stream: TextIO | None = None, interval: float = 30.0,
               every: int = 0) -> "Progress":
        """``off`` when ``quiet``, a bar when ``stream`` (default stderr) is a terminal, log lines otherwise."""
        stream = sys.stderr if stream is None else stream
        if quiet:
            return cls("off", interval, every)
        isatty = getattr(stream, "isatty", None)
        return cls("bar" if isatty is not None and isatty() else "log", interval, every)

    def say(self, line: str, write: Callable[[str], None] | None = None) -> None:
        """A phase's one line (e.g. "generating 900 images") on stderr, unless ``off``."""
        if self:
            (write or _stderr)(line)

    def bar(self, iterable: Iterable | None = None, *, desc: str, total: int | None = None, initial: int = 0,
            unit: str = "step", write: Callable[[str], None] | None = None,
            clock: Callable[[], float] = time.monotonic):
        """An iterator over ``iterable`` (or a counter to ``update`` when None) that reports as :attr:`mode` says,
        counting in ``unit`` (``step``, ``pair``, ...)."""
        if self.mode == "bar":
            from tqdm.auto import tqdm

            return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=False)
        return LogBar(iterable, desc=desc, total=total, initial=initial, unit=unit, interval=self.interval,
                      every=self.every, write=(write or _stderr) if self.mode == "log" else None, clock=clock)


def quiet_library_bars(progress: Progress) -> None:
    """Outside ``bar`` mode, switch off the loading bars of transformers and diffusers (where installed): redrawn
    into a log file they are noise. Called once by a command's ``main`` (it sets those libraries' own switch)."""
    if progress.mode == "bar":
        return
    import importlib

    for name in ("transformers.utils.logging", "diffusers.utils.logging"):
        try:
            importlib.import_module(name).disable_progress_bar()
        except ImportError:
            pass


def as_progress(progress: "Progress | bool | None") -> Progress:
    """``progress`` as a :class:`Progress`: True is a bar (the old boolean meaning), False or None is off."""
    if isinstance(progress, Progress):
        return progress
    return Progress("bar" if progress else "off")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``seconds`` as people read it: ``42s``, ``3m05s``, ``2h07m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LogBar:
    """tqdm's iterator/counter surface (``update``, ``set_postfix``, ``close``, iteration) writing lines instead of
    a bar (``write`` None: silent). A line reports step i of N, the postfix (e.g. the loss), the rate over the
    steps since this bar started and the ETA at that rate."""

    def __init__(self, iterable: Iterable | None = None, *, desc: str, total: int | None = None, initial: int = 0,
                 unit: str = "step", interval: float = 30.0, every: int = 0, write: Callable[[str], None] | None = _stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.iterable, self.desc, self.unit, self.initial, self.n = iterable, desc, unit, initial, initial
        self.total = total if total is not None else (len(iterable) + initial if hasattr(iterable, "__len__")
                                                      else None)
        self.interval, self.every, self.write, self.clock = interval, every, write, clock
        self.postfix = ""
        self.t0 = self.last_t = clock()
        self.last_n = initial
        self.closed = False
        if write is not None:
            where = f" from {unit} {initial}" if initial else ""
            write(f"{desc}: started{where}" + (f", {self.total} {unit}s" if self.total is not None else ""))

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = "  ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        due = now - self.last_t >= self.interval or (self.every and self.n - self.last_n >= self.every)
        if due and self.write is not None and not (self.total is not None and self.n >= self.total):
            self.write(self.line(now))
            self.last_t, self.last_n = now, self.n

    def line(self, now: float) -> str:
        """The report at ``now``: ``desc: step i/N (x %)  postfix  r steps/s  ETA t`` (in its unit)."""
        done = self.n - self.initial
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        cells = [f"{self.desc}: {self.unit} {self.n}" + (f"/{self.total} ({100 * self.n / self.total:.0f} %)"
                                                   if self.total else "")]
        if self.postfix:
            cells.append(self.postfix)
        cells.append(f"{rate:.3g} {self.unit}s/s")
        if self.total and rate > 0:
            cells.append(f"ETA {duration((self.total - self.n) / rate)}")
        return "  ".join(cells)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.write is not None:
            now = self.clock()
            text = f"{self.desc}: done, {self.n - self.initial} {self.unit}s in {duration(now - self.t0)}"
            self.write(text + (f"  {self.postfix}" if self.postfix else ""))
