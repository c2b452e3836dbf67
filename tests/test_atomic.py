"""One atomic writer (io/atomic.py) and one value converter (io/values.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reasonry.io.atomic import atomic_path, remove_stale_temps, write_text
from reasonry.io.values import finite, to_scalar
from reasonry.io.writers import write_table

SRC = str(Path(__file__).resolve().parents[1] / "src")

_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from reasonry.io.writers import write_table
    def rows():
        for i in range(100):
            yield {"a": i}
        os.kill(os.getpid(), signal.SIGKILL)  # killed midway, as by `kill -9`
        yield {"a": -1}
    write_table(sys.argv[1], ["a"], rows())
""")


def _temps(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if ".tmp-" in path.name)


def _kill_midway(out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL


def test_a_write_killed_with_sigkill_leaves_target_untouched_and_the_next_write_removes_its_temp(tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text('{"a": "old"}\n', encoding="utf-8")
    _kill_midway(out)
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].name.startswith(".results.jsonl.tmp-")
    assert out.read_text(encoding="utf-8") == '{"a": "old"}\n'
    write_table(out, ["a"], [{"a": 1}])
    assert _temps(tmp_path) == []
    assert out.read_text(encoding="utf-8") == '{"a": 1}\n'


def test_temps_of_a_running_writer_or_of_another_target_are_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".out.csv.tmp-{sleeper.pid}-0123abcd"
        other = tmp_path / ".other.csv.tmp-999999999-0123abcd"
        live.write_text("x")
        other.write_text("x")
        assert remove_stale_temps(tmp_path / "out.csv") == []
        assert live.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temps(tmp_path / "out.csv") == [live]


def test_a_failed_write_removes_its_temp_and_keeps_the_target(tmp_path):
    out = tmp_path / "report.html"
    write_text(out, "first")
    with pytest.raises(RuntimeError), atomic_path(out) as temp:
        temp.write_text("half", encoding="utf-8")
        raise RuntimeError("boom")
    assert out.read_text(encoding="utf-8") == "first"
    assert _temps(tmp_path) == []


def test_values_have_one_decimal_rule_and_plain_types():
    assert to_scalar(Decimal("3")) == 3 and type(to_scalar(Decimal("3"))) is int
    assert to_scalar(Decimal("2.5")) == 2.5
    assert type(to_scalar(np.int64(7))) is int and type(to_scalar(np.float32(0.5))) is float
    assert type(to_scalar(np.bool_(True))) is bool
    assert to_scalar(pd.NA) is None and to_scalar(pd.NaT) is None
    assert to_scalar(dt.date(2026, 1, 2)) == "2026-01-02"
    assert json.loads(to_scalar([1, float("nan"), {"d": Decimal("1.5")}])) == [1, None, {"d": 1.5}]
    assert finite(float("inf")) is None and finite(1.5) == 1.5


def test_readers_and_writers_share_the_converter(tmp_path):
    out = tmp_path / "d.jsonl"
    write_table(out, ["x", "y"], [{"x": Decimal("10"), "y": Decimal("0.25")}])
    assert json.loads(out.read_text(encoding="utf-8")) == {"x": 10, "y": 0.25}
