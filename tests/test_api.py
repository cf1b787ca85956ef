"""The Python API (``gradprobe.run``, ``open_run``, ``compare``) and the installed package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib.metadata import version

import pandas as pd
import pytest
import torch
from support import REPO, SMOKE
from torch import nn

import gradprobe
from gradprobe.api import load, set_config_key
from gradprobe.cli.main import main
from gradprobe.core.errors import UserError

SMALL = """name = "api-small"
[model]
width = 6
[sweep]
seeds = 4
depth = [3]
residual = [false, true]
"""


def tanh_net(*, width: int, depth: int, seed: int, **kwargs) -> nn.Module:
    """A model defined in this test file, passed to gradprobe.run as a callable."""
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def test_version_is_the_installed_one():
    assert gradprobe.__version__ == version("gradprobe")
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0


def test_every_form_of_config_gives_the_same_cells(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(SMALL, encoding="utf-8")
    ids = [[c.cell_id for c in load(form).cells()]
           for form in (str(path), path, SMALL, load(SMALL))]
    assert ids[0] == ids[1] == ids[2] == ids[3]
    assert [c.cell_id for c in load("smoke").cells()] == \
        [c.cell_id for c in load(SMOKE).cells()]


def test_a_model_callable_gives_the_records_of_the_same_function_by_import_string(tmp_path):
    """The callable route measures exactly what ``[model] factory`` measures."""
    by_callable = gradprobe.run(SMALL, model=tanh_net, out=tmp_path / "a", progress=False)
    text = set_config_key(SMALL, "model", "factory", "test_api:tanh_net")
    by_string = gradprobe.run(text, out=tmp_path / "b", progress=False)
    columns = ["depth", "residual", "seed", "param", "grad_mean_abs", "grad_l2", "act_rms",
               "init_fingerprint"]
    a = by_callable.records()[columns].sort_values(["residual", "seed", "param"])
    b = by_string.records()[columns].sort_values(["residual", "seed", "param"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    (spec,) = by_callable.manifest.factories
    entry = by_callable.manifest.factories[spec]
    assert spec.startswith("test_api:tanh_net#") and entry["from_python"]
    assert entry["qualname"] == "tanh_net" and entry["file"].endswith("test_api.py")
    assert len(entry["source_sha256"]) == 64
    assert by_callable.manifest.config.text.count(spec) == 1  # re-read by later stages


def signed_batch(*, seed: int, batch_size: int, width: int, **kwargs) -> torch.Tensor:
    """A batch function defined in this test file: inputs of mixed sign."""
    return torch.randn(batch_size, width) * 3.0


def test_a_batch_callable_gives_the_records_of_the_same_function_by_import_string(tmp_path):
    by_callable = gradprobe.run(SMALL, model=tanh_net, batch=signed_batch,
                                out=tmp_path / "a", progress=False)
    text = set_config_key(SMALL, "model", "factory", "test_api:tanh_net")
    text = set_config_key(text, "data", "factory", "test_api:signed_batch")
    by_string = gradprobe.run(text, out=tmp_path / "b", progress=False)
    columns = ["residual", "seed", "param", "grad_mean_abs", "act_rms", "init_fingerprint"]
    a = by_callable.records()[columns].sort_values(["residual", "seed", "param"])
    b = by_string.records()[columns].sort_values(["residual", "seed", "param"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    plain = gradprobe.run(SMALL, model=tanh_net, out=tmp_path / "c", progress=False)
    assert not plain.records()["grad_mean_abs"].equals(by_callable.records()["grad_mean_abs"])
    specs = set(by_callable.manifest.factories)
    assert any(s.startswith("test_api:signed_batch#") for s in specs), specs


def test_set_config_key_replaces_adds_or_appends():
    assert set_config_key('name = "x"\n', "data", "factory", "m:f") == \
        'name = "x"\n\n[data]\nfactory = "m:f"\n'
    text = 'name = "x"\n[model]\nwidth = 4\nfactory = "a:b"\n[sweep]\nseeds = 2\n'
    assert set_config_key(text, "model", "factory", "m:f") == \
        'name = "x"\n[model]\nwidth = 4\nfactory = "m:f"\n[sweep]\nseeds = 2\n'
    assert set_config_key(text, "sweep", "factory", "m:f").endswith(
        '[sweep]\nfactory = "m:f"\nseeds = 2\n')


def test_a_changed_function_is_another_plan_not_a_resume(tmp_path):
    """A notebook cell edited and run again: same name, other code, so another model."""
    gradprobe.run(SMALL, model=tanh_net, out=tmp_path / "r", progress=False)
    cell = ("def tanh_net(*, width, depth, seed, **kwargs):\n"
            "    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))\n")
    namespace = {"nn": nn}
    exec(cell, namespace)
    edited = namespace["tanh_net"]
    edited.__module__ = tanh_net.__module__
    with pytest.raises(UserError, match="holds records of another sweep"):
        gradprobe.run(SMALL, model=edited, out=tmp_path / "r", progress=False)


def test_the_run_object_reads_analyses_and_reports(tmp_path):
    run = gradprobe.run(SMALL, out=tmp_path / "run", progress=False)
    assert run.result.cells_run == 2 and run.manifest.complete
    assert run.config.name == "api-small" and run.manifest.cell_ids == [
        c.cell_id for c in run.config.cells()]
    again = gradprobe.open_run(tmp_path / "run")
    assert again.records().equals(run.records()) and again.result is None
    analysis = again.analyze(n_resamples=199, seed=3)
    assert isinstance(analysis.summary, pd.DataFrame) and len(analysis.summary)
    assert analysis.meta["settings"]["n_resamples"] == 199
    assert again.analysis().summary.equals(analysis.summary)
    page = again.report(tmp_path / "page.html")
    assert page == tmp_path / "page.html" and "api-small" in page.read_text(encoding="utf-8")
    with pytest.raises(UserError, match="n_resamples"):
        again.analyze(resamples=10)


def test_open_run_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match=r"no manifest\.json"):
        gradprobe.open_run(tmp_path)


def test_compare_answers_as_the_command_line_does(smoke_run, smoke_variants, tmp_path):
    same = gradprobe.compare(smoke_run, smoke_run, n_resamples=199, write=False)
    changed = gradprobe.compare(smoke_run, smoke_variants["gain"], n_resamples=199,
                                out=tmp_path)
    assert same.passed and same.exit_code == 0 and str(same) == "PASS: nothing regressed"
    assert not changed.passed and changed.exit_code == 1
    assert (changed.verdicts["verdict"] == "regressed").sum() == changed.counts()["regressed"]
    assert {p.name for p in changed.files} == {"compare.json", "compare.md"}
    cli = main(["compare", str(smoke_run), str(smoke_variants["gain"]), "--resamples", "199",
                "--out", str(tmp_path / "cli")])
    assert cli == changed.exit_code


def test_readme_example_runs_beside_decoy_bench_and_analysis_packages(tmp_path):
    """The README's API example, as a script in a directory holding a ``bench/`` package
    and an ``analysis/stats.py`` of its own: gradprobe must not import either."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S).group(1)
    baseline = REPO / "reports" / "baselines" / "smoke"
    (tmp_path / "example.py").write_text(
        code.replace('"reports/baselines/smoke"', repr(str(baseline))), encoding="utf-8")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("raise ImportError('decoy')\n")
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "stats.py").write_text("CONFIDENCE = 'decoy'\n")
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "True {'regressed': 0" in done.stdout  # the smoke run against its baseline
    assert done.stdout.rstrip().endswith("PASS: nothing regressed")
    assert (tmp_path / "reports" / "api-demo" / "index.html").is_file()
    assert (tmp_path / "reports" / "api-mine" / "index.html").is_file()
    assert "'from_python': True" in done.stdout


def missing_from_the_wheel(names: list[str]) -> list[str]:
    """Source files of the three mapped trees that the wheel lacks: a subpackage left out of
    pyproject.toml's explicit ``packages`` list installs without it (and fails on import)."""
    roots = {"src/gradprobe": "gradprobe", "bench": "gradprobe/bench",
             "analysis": "gradprobe/analysis"}
    wanted = [f"{target}/{path.relative_to(REPO / root).as_posix()}"
              for root, target in roots.items()
              for path in (REPO / root).rglob("*")
              if path.suffix in (".py", ".toml", ".j2") and "__pycache__" not in path.parts]
    return sorted(set(wanted) - set(names))


@pytest.mark.slow
def test_the_wheel_installs_one_package_named_gradprobe(tmp_path):
    # From a copy of the sources: setuptools reuses a checkout's stale build/ directory, which
    # would hide a subpackage missing from pyproject.toml.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for tree in ("src", "bench", "analysis"):
        shutil.copytree(REPO / tree, source / tree,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("gradprobe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"gradprobe"}
    assert "gradprobe/bench/configs/smoke.toml" in names
    assert "gradprobe/analysis/report/templates/report.html.j2" in names
    assert not missing_from_the_wheel(names), "add their packages to pyproject.toml"
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True,
                               timeout=300)
    assert installed.returncode == 0, installed.stderr
    probe = ("import importlib.util as u, gradprobe; print(gradprobe.__version__, "
             "u.find_spec('bench'), u.find_spec('analysis'))")
    shown = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert shown.stdout.split() == [gradprobe.__version__, "None", "None"], shown.stderr
    assert (env / "bin" / "gradprobe").is_file()


def test_a_registered_callable_resolves_to_itself_and_elsewhere_says_how_to_fix():
    from gradprobe.bench.models.callables import register
    from gradprobe.bench.models.user_code import resolve_factory

    spec = register(tanh_net)
    assert resolve_factory(spec) is tanh_net
    with pytest.raises(UserError, match=r"passed to gradprobe\.run in another Python process"):
        resolve_factory(spec.replace("#", "#0")[:-1])
    with pytest.raises(UserError, match="__main__ is the program that runs gradprobe"):
        resolve_factory("__main__:no_such_net")
