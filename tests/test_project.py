"""Promises about the project itself: one source of dependency truth, the README's commands, CI."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs |= set(extra)
    return {r.replace(" ", "") for r in reqs}


def test_environment_yml_installs_exactly_what_pyproject_declares():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p.replace(" ", "") for p in pip if not p.startswith("-e")}
    assert listed == pyproject_requirements()
    assert "-e ." in pip  # the package itself
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"


def test_torch_is_unpinned_in_pyproject_and_pinned_overridably_in_the_makefile():
    torch_reqs = [r for r in pyproject_requirements() if re.match(r"torch\b", r)]
    assert torch_reqs == ["torch>=2.3"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==2\.13\.0$", makefile, re.M)  # ?= : overridable
    # torch is installed before anything else and everything else is constrained to it
    assert makefile.index("$(PIP) install $(TORCH_SPEC)") < makefile.index("-c $(CONSTRAINTS)")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make run" in readme


def test_presets_ship_inside_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "configs/*.yaml" in project["tool"]["setuptools"]["package-data"]["timesformer_lite"]
    assert {p.stem for p in (ROOT / "timesformer_lite" / "configs").glob("*.yaml")} >= {"smoke", "toy", "k400"}


def test_model_and_benchmarks_import_without_video_libraries(tmp_path):
    """A GPU image may have torch and transformers but not PyAV or decord: everything but video I/O works."""
    import subprocess
    import sys

    for name in ("av", "decord"):  # packages that refuse to import, shadowing any installed ones
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed')\n")
    code = (
        "import torch, timesformer_lite as tl, bench_model\n"
        "m = tl.TimeSformer(tl.load_config('smoke').model).eval()\n"
        "print(tuple(m(torch.randn(1, 4, 3, 32, 32)).shape))\n"
        "from timesformer_lite.data.toy import write_mp4\n"
        "try:\n    write_mp4('x.mp4', __import__('numpy').zeros((2, 8, 8, 3), 'uint8'))\nexcept ImportError as e:\n    print(e)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}:{ROOT / 'benchmarks'}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["(1, 10)", "reading and writing videos needs PyAV: pip install av"]
