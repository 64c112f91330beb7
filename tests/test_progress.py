"""Progress where no terminal is: log lines at a bounded interval, with rate and ETA (implosion_base.progress)."""

from __future__ import annotations

import io

import pytest

from implosion_base.progress import LogBar, Progress, as_progress, duration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(total: int, seconds_per_step: float, interval: float, every: int = 0, initial: int = 0):
    lines: list[str] = []
    clock = Clock()
    bar = LogBar(range(initial, total), desc="unet", total=total, initial=initial, interval=interval, every=every,
                 write=lines.append, clock=clock)
    for step in bar:
        clock.now += seconds_per_step
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
    return lines


def test_lines_come_at_most_one_interval_apart_and_say_rate_and_eta():
    # 100 steps at 2 s each with a 30 s interval: a line at the start, after every 15 steps, and at the end
    lines = _run(100, 2.0, 30.0)
    assert lines[0] == "unet: started, 100 steps"
    assert lines[-1].startswith("unet: done, 100 steps in 3m20s")
    progress = lines[1:-1]
    assert len(progress) == 6  # at steps 15, 30, ..., 90 (the 100th is the done line)
    assert progress[0].startswith("unet: step 15/100 (15 %)")
    assert "0.5 steps/s" in progress[0]
    assert progress[0].endswith("ETA 2m50s")  # 85 steps left at 0.5 steps/s
    # the postfix is the loss the loop reported for the step just done (the 15th: 1/15)
    assert "loss 0.0667" in progress[0]


def test_slow_steps_still_get_a_line_each_and_steps_bound_the_gap_too():
    assert len(_run(5, 100.0, 30.0)) == 1 + 4 + 1  # every step is past the interval (the 5th is the done line)
    lines = _run(50, 0.01, 1e9, every=10)
    assert [ln.split()[2] for ln in lines[1:-1]] == ["10/50", "20/50", "30/50", "40/50"]


def test_a_resumed_run_counts_from_its_checkpoint():
    lines = _run(40, 1.0, 10.0, initial=30)
    assert lines[0] == "unet: started from step 30, 40 steps"
    assert lines[-1].startswith("unet: done, 10 steps in 10s")


def test_choose_bar_on_a_terminal_lines_elsewhere_nothing_when_quiet():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Progress.choose(stream=Tty()).mode == "bar"
    assert Progress.choose(stream=io.StringIO()).mode == "log"
    assert Progress.choose(quiet=True, stream=Tty()).mode == "off"
    assert not Progress.choose(quiet=True) and Progress.choose(stream=io.StringIO())
    assert as_progress(True).mode == "bar" and as_progress(False).mode == "off"
    with pytest.raises(ValueError, match="progress mode"):
        Progress("loud")


def test_off_writes_nothing_and_counts_like_tqdm(capsys):
    bar = Progress("off").bar(desc="x", total=3)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert bar.n == 3
    Progress("off").say("nothing")
    assert capsys.readouterr().err == ""
    Progress("log").say("phase")
    assert capsys.readouterr().err == "phase\n"


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"),
                                            (7320, "2h02m")])
def test_duration(seconds, text):
    assert duration(seconds) == text
