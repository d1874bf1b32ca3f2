"""Set-up cannot drift: one pinned set, read by both pip and conda; lab on loopback with a token; CI = make test."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_every_requirement_is_pinned_exactly():
    reqs = requirements()
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", r) for r in reqs), reqs
    assert "torch==2.13.0" in reqs  # the CPU build on these machines' disk; anything else pulls CUDA
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"jupyterlab", "numpy", "matplotlib", "ipywidgets", "nbval", "pytest", "nbclient"} <= names


def test_environment_yml_reads_the_same_pins():
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- python=3\.11\s*$", env, re.M)
    pip_items = re.findall(r"^\s{6}- (.+)$", env, re.M)
    assert pip_items == ["-r requirements.txt", "-e ."], "the pip section must only read requirements.txt"
    deps = env[env.index("dependencies:"):]
    assert re.findall(r"^  - (\S+)$", deps, re.M) == ["python=3.11", "pip", "pip:"], "no conda-side packages"


def test_python_version_agrees():
    assert 'requires-python = ">=3.11,<3.12"' in (ROOT / "pyproject.toml").read_text()


def test_lab_is_loopback_with_token_and_ci_runs_the_readme_command():
    make = (ROOT / "Makefile").read_text()
    lab = make[make.index("\nlab:"):make.index("\ntest:")]
    assert "--ServerApp.ip=127.0.0.1" in lab and "token" not in lab.lower() and "password" not in lab.lower()
    assert "00_start_here.ipynb" in lab
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M) and "REQUIRE_BROWSER=1" in ci


def test_ignored_folders():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".venv/", ".jupyter/", ".cache/", ".ipynb_checkpoints/"} <= set(ignored)
