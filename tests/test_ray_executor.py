"""`--executor ray` on a local Ray cluster (2 CPUs, shared by the tests): same outputs, resume, per-row errors."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonry.config import ExecutorOptions, SamplingParams
from reasonry.tasks.generate import GenerateConfig, generate
from tests.cli_helpers import run_cli, run_subprocess

ray = pytest.importorskip("ray", reason="install reasonry[ray]")
PARAMS = SamplingParams(temperature=0.7, max_new_tokens=12, seed=3)


@pytest.fixture(scope="session")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _questions(path: Path, count: int, marker_row: int | None = None) -> Path:
    rows = [{"seq": i, "question": f"Question number {i}: why?" + (" BOOM" if i == marker_row else "")}
            for i in range(count)]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def _run(tmp_path: Path, questions: Path, model: Path, name: str, **config: object) -> tuple[dict, list[dict]]:
    out = tmp_path / f"{name}.jsonl"
    options = {"batch_size": 4, **config.pop("engine_options", {})}  # type: ignore[arg-type]
    executor = ExecutorOptions(**{k: config.pop(k) for k in ("executor", "replicas") if k in config})  # type: ignore[arg-type]
    summary = generate(questions, [f"hf:{model}"], out=out, db=tmp_path / f"{name}.db",
                       config=GenerateConfig(params=PARAMS, engine_options=options, executor=executor))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return summary, sorted(rows, key=lambda r: int(r["seq"]))


def test_ray_replicas_give_the_local_outputs(ray_cluster, tmp_path, tiny_model):
    questions = _questions(tmp_path / "q.jsonl", 12)
    local, local_rows = _run(tmp_path, questions, tiny_model, "local")
    remote, remote_rows = _run(tmp_path, questions, tiny_model, "ray", executor="ray", replicas=2)
    assert (remote["generated"], remote["failed"], remote["cached"]) == (12, 0, 0)
    fields = ("seq", "reasoning", "response", "completion_tokens", "finish_reason", "error")
    assert [{k: r[k] for k in fields} for r in remote_rows] == [{k: r[k] for k in fields} for r in local_rows]
    again, _ = _run(tmp_path, questions, tiny_model, "ray", executor="ray", replicas=2)
    assert (again["generated"], again["cached"]) == (0, 12)


def test_a_replica_that_raises_records_the_error_on_its_row(ray_cluster, tmp_path, tiny_model):
    questions = _questions(tmp_path / "q.jsonl", 8, marker_row=5)
    summary, rows = _run(tmp_path, questions, tiny_model, "fail", executor="ray", replicas=2,
                         engine_options={"batch_size": 4, "ray_test_fail_marker": "BOOM"})
    assert (summary["generated"], summary["failed"]) == (7, 1)
    assert "test failure hook" in rows[5]["error"] and rows[5]["reasoning"] is None
    assert all(r["error"] is None and r["reasoning"] for i, r in enumerate(rows) if i != 5)


def test_killed_driver_resumes_without_duplicates(ray_cluster, tmp_path, tiny_model):
    rows = 120
    questions = _questions(tmp_path / "q.jsonl", rows)
    db = tmp_path / "r.db"
    args = ["generate", str(questions), "--model", f"hf:{tiny_model}", "--max-new-tokens", "24", "--batch-size", "2",
            "--executor", "ray", "--ray-address", ray_cluster, "--replicas", "2", "--db", str(db), "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "reasonry", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    done_before = _wait_for_results(db, proc, at_least=10)
    assert proc.poll() is None, f"the run finished before it could be killed ({done_before} stored)"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM results WHERE error IS NULL").fetchone()[0]
    assert 10 <= stored < rows
    out = tmp_path / "o.jsonl"
    result = run_subprocess([*args, "--out", str(out)])
    assert result.code == 0, result.err[-3000:]
    summary = json.loads(result.out)
    assert (summary["generated"], summary["cached"], summary["failed"]) == (rows - stored, stored, 0)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(int(r["seq"]) for r in lines) == list(range(rows)) and all(r["reasoning"] for r in lines)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == rows


def _wait_for_results(db: Path, proc: subprocess.Popen, at_least: int, timeout: float = 150) -> int:
    done = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and done < at_least:
        time.sleep(0.2)
        if not db.exists():
            continue
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                done = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            continue
    return done


def test_unknown_executor_is_a_one_line_error(tmp_path, tiny_model, capsys, monkeypatch):
    questions = _questions(tmp_path / "q.jsonl", 1)
    result = run_cli(["generate", str(questions), "--model", f"hf:{tiny_model}", "--executor", "spark",
                      "--db", str(tmp_path / "r.db")], capsys, monkeypatch)
    assert result.code == 2 and "--executor 'spark'" in result.err and "Traceback" not in result.err
