"""A core install (no torch, TRL, datasets or FastAPI) runs generate, check, report and export against an
OpenAI-compatible server, and names the extra to install for the rest.

The venv is built once from PyPI (pip installs this project's core dependencies) and kept in .cache/core-venv
until [project] dependencies change; the code under test is the working tree's src/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest
from fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "core-venv"
HEAVY = ("torch", "transformers", "trl", "datasets", "fastapi", "peft", "accelerate", "uvicorn", "ray", "vllm")


def _python() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def _dependencies_key() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return hashlib.sha256(json.dumps(project["dependencies"]).encode()).hexdigest()


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = _dependencies_key()
    marker = VENV / "dependencies.sha256"
    if not (marker.exists() and marker.read_text() == key and _python().exists()):
        shutil.rmtree(VENV, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        pip = [str(_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        build = tmp_path_factory.mktemp("core-build")
        # A plain (not editable) install of the project brings exactly the core dependencies; the copy of reasonry
        # itself is removed again so that the tests run the working tree.
        subprocess.run([*pip, "--cache-dir", str(ROOT / ".cache" / "pip"), str(ROOT)], check=True, cwd=build,
                       timeout=900)
        subprocess.run([str(_python()), "-m", "pip", "uninstall", "-q", "-y", "reasonry"], check=True, timeout=120)
        marker.write_text(key)
    return _python()


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_core_install_has_no_heavy_libraries(core_python: Path, tmp_path: Path) -> None:
    probe = f"import importlib.util, json; print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m)]))"
    done = _run(core_python, "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert _run(core_python, "-c", "import torch", cwd=tmp_path).returncode != 0


def test_core_install_runs_an_openai_generate_check_report_and_export(core_python: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"seq": 1, "question": "What is 2+2?"}, {"seq": 2, "question": "Why?"}]))
    with FaultServer() as server:
        done = _run(core_python, "-m", "reasonry", "generate", "q.json", "--model", f"openai:m@{server.url}", "--chat",
                    "--out", "out.xlsx", "--db", "r.db", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["generated"] == 2 and summary["failed"] == 0
        run = summary["run_id"]
        for args in (["check", run, "--json"], ["report", run, "--out", "report.html"],
                     ["export", run, "--out", "sft.jsonl"], ["generate", "q.json", "--model", f"openai:m@{server.url}",
                                                             "--chat", "--out", "out.jsonl", "--json"]):
            done = _run(core_python, "-m", "reasonry", *args, "--db", "r.db", cwd=tmp_path)
            assert done.returncode == 0, (args, done.stderr)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["seq"] for row in rows] == [1, 2]
    assert all(row["reasoning"].startswith("reasoning ") and row["reasoning"].endswith(" by m") for row in rows)
    assert (tmp_path / "out.xlsx").stat().st_size > 0 and (tmp_path / "report.html").exists()
    assert len((tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()) == 2


EXTRA_NEEDED = [
    (["generate", "q.json", "--model", "hf:./model", "--db", "r.db"], "a local model (hf:) needs the 'hf' extra (torch is not installed)",
     "hf"),
    (["serve", "--model", "openai:m@http://127.0.0.1:9/v1", "--port", "0", "--db", "r.db"],
     "the web app (serve) needs the 'web' extra", "web"),
    (["train", "q.json", "--base", "hf:./model", "--out", "adapter"], "reasonry train needs the 'train' extra", "train"),
]


@pytest.mark.parametrize(("args", "needle", "extra"), EXTRA_NEEDED, ids=[e for _, _, e in EXTRA_NEEDED])
def test_core_install_names_the_extra_to_install(core_python: Path, tmp_path: Path, args: list[str], needle: str,
                                                 extra: str) -> None:
    (tmp_path / "q.json").write_text(json.dumps([{"question": "q"}]))
    done = _run(core_python, "-m", "reasonry", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {needle}") and last.endswith(f"pip install 'reasonry[{extra}]'"), done.stderr
    assert "Traceback" not in done.stderr
