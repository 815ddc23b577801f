"""nets.autotune: the chooser keeps the faster candidate, persists and reloads it, obeys the
off switch and repairs a corrupt file.

Oracle: a fake clock that each candidate advances by a known number of seconds, so which
candidate is faster is known exactly; a call counter shows when timing ran.
"""

import json

import pytest

from nets import autotune


class FakeClock:
    """``autotune.timer`` stand-in: candidates advance it by their cost."""

    def __init__(self):
        self.now = 0.0
        self.calls: dict[str, int] = {}

    def __call__(self) -> float:
        return self.now

    def candidate(self, name: str, seconds: float):
        def run():
            self.calls[name] = self.calls.get(name, 0) + 1
            self.now += seconds
            return name

        return run


@pytest.fixture
def clock(monkeypatch):
    """A fake clock, tuning on, no folder, empty memory (restored afterwards)."""
    fake = FakeClock()
    monkeypatch.setattr(autotune, "timer", fake)
    monkeypatch.setattr(autotune, "enabled", True)
    monkeypatch.delenv(autotune.ENV, raising=False)
    autotune.set_dir(None)
    autotune.forget()
    yield fake
    autotune.set_dir(None)
    autotune.forget()


def _entries(folder) -> dict:
    return json.loads((folder / autotune.FILE).read_text())["entries"]


def test_picks_faster_persists_and_reloads_without_timing(clock, tmp_path):
    autotune.set_dir(tmp_path)
    candidates = {"slow": clock.candidate("slow", 3.0), "fast": clock.candidate("fast", 1.0)}
    assert autotune.choose("k", candidates, default="slow") == "fast"
    # one untimed warm-up call and 10 timed calls each, twice (a change is confirmed)
    assert clock.calls == {"slow": 22, "fast": 22}
    entry = _entries(tmp_path)[f"{autotune.machine()}|k"]
    assert entry["choice"] == "fast"
    assert entry["seconds"] == entry["recheck_seconds"] == {"slow": 3.0, "fast": 1.0}

    autotune.forget()  # a new process: nothing in memory, the file is read again
    assert autotune.choose("k", candidates, default="slow") == "fast"
    assert clock.calls == {"slow": 22, "fast": 22}  # not timed again

    autotune.set_dir(None)  # memory only: still remembered for this process
    assert autotune.choose("k", candidates, default="slow") == "fast"
    assert clock.calls == {"slow": 22, "fast": 22}


def test_keys_are_separate_and_margin_keeps_the_default(clock):
    near = {"a": clock.candidate("a", 1.0), "b": clock.candidate("b", 0.95)}
    assert autotune.choose("near", near, default="a") == "a"  # 5% faster: under the margin
    clear = {"a": clock.candidate("a2", 1.0), "b": clock.candidate("b2", 0.85)}
    assert autotune.choose("clear", clear, default="a") == "b"  # 15% faster
    assert autotune.choose("near", near, default="a", margin=0.0) == "a"  # remembered


def test_work_divides_time_and_choose_size(clock):
    # 8 examples in 1 s (0.125 s each) vs 32 in 2 s (0.0625 s each): 32 wins per example
    sizes = {8: 1.0, 32: 2.0, 16: 1.9}
    assert autotune.choose_size("chunk", lambda n: clock.candidate(str(n), sizes[n])(),
                                sizes=(8, 32), default=16) == 32
    assert clock.calls == {"8": 3, "16": 6, "32": 6}  # warm-up + 2 timed; 16, 32 again


def test_a_change_needs_a_second_measurement_to_agree(clock):
    """A candidate fast only in the first measurement (a burst of load on the default, say)
    does not replace the default."""
    calls = {"n": 0}

    def lucky():
        calls["n"] += 1
        clock.now += 0.5 if calls["n"] <= 11 else 2.0  # fast only in the first measurement

    candidates = {"default": clock.candidate("default", 1.0), "lucky": lucky}
    assert autotune.choose("k", candidates, default="default") == "default"
    assert calls["n"] == 22


def test_off_switch_returns_default_without_timing(clock, tmp_path, monkeypatch):
    autotune.set_dir(tmp_path)
    candidates = {"slow": clock.candidate("slow", 3.0), "fast": clock.candidate("fast", 1.0)}
    monkeypatch.setattr(autotune, "enabled", None)
    monkeypatch.setenv(autotune.ENV, "0")
    assert autotune.choose("k", candidates, default="slow") == "slow"
    monkeypatch.setenv(autotune.ENV, "1")
    monkeypatch.setattr(autotune, "enabled", False)  # the attribute wins over the variable
    assert autotune.choose("k", candidates, default="slow") == "slow"
    assert clock.calls == {}
    assert not (tmp_path / autotune.FILE).exists()


def test_default_is_on_only_with_a_folder(clock, tmp_path, monkeypatch):
    monkeypatch.setattr(autotune, "enabled", None)
    assert not autotune.is_enabled()  # no folder: timing would not outlive the process
    autotune.set_dir(tmp_path)
    assert autotune.is_enabled()
    monkeypatch.setenv(autotune.ENV, "off")
    assert not autotune.is_enabled()


def test_corrupt_file_warns_is_retimed_and_repaired(clock, tmp_path):
    autotune.set_dir(tmp_path)
    (tmp_path / autotune.FILE).write_text('{"version": 1, "entries": {"trunc')
    candidates = {"slow": clock.candidate("slow", 3.0), "fast": clock.candidate("fast", 1.0)}
    with pytest.warns(autotune.AutotuneCacheWarning, match="corrupt"):
        assert autotune.choose("k", candidates, default="slow") == "fast"
    assert clock.calls == {"slow": 22, "fast": 22}
    assert _entries(tmp_path)[f"{autotune.machine()}|k"]["choice"] == "fast"  # rewritten
    assert [p.name for p in tmp_path.iterdir()] == [autotune.FILE]  # no temporary left


def test_stale_record_naming_no_candidate_is_retimed(clock, tmp_path):
    autotune.set_dir(tmp_path)
    full = f"{autotune.machine()}|k"
    data = {"version": autotune.VERSION, "entries": {full: {"choice": "gone"}}}
    (tmp_path / autotune.FILE).write_text(json.dumps(data))
    candidates = {"slow": clock.candidate("slow", 3.0), "fast": clock.candidate("fast", 1.0)}
    with pytest.warns(autotune.AutotuneCacheWarning, match="gone"):
        assert autotune.choose("k", candidates, default="slow") == "fast"
    assert _entries(tmp_path)[full]["choice"] == "fast"


def test_writes_merge_entries_of_other_processes(clock, tmp_path):
    autotune.set_dir(tmp_path)
    autotune.choose("a", {"x": clock.candidate("x", 1.0), "y": clock.candidate("y", 2.0)}, "y")
    other = json.loads((tmp_path / autotune.FILE).read_text())
    other["entries"]["another machine|a"] = {"choice": "y"}
    (tmp_path / autotune.FILE).write_text(json.dumps(other))  # another process wrote meanwhile
    autotune.choose("b", {"x": clock.candidate("x", 1.0), "y": clock.candidate("y", 2.0)}, "y")
    assert set(_entries(tmp_path)) == {f"{autotune.machine()}|a", f"{autotune.machine()}|b",
                                       "another machine|a"}


def test_default_must_be_a_candidate(clock):
    with pytest.raises(ValueError, match="not a candidate"):
        autotune.choose("k", {"a": clock.candidate("a", 1.0)}, default="b")
