"""docs/ci/gradprobe.yml, the GitHub Actions workflow users copy: it parses, has the pull
request gate and the nightly bench-publish-deploy, and every command it calls exists."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from support import REPO

from gradprobe.cli.main import build_parser

WORKFLOW = REPO / "docs" / "ci" / "gradprobe.yml"


def steps(job: dict) -> list[str]:
    return [line.strip() for step in job["steps"] for line in step.get("run", "").splitlines()
            if line.strip()]


def test_workflow_parses_and_has_both_jobs():
    flow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = flow[True]  # YAML 1.1 reads the key `on` as true
    assert {"pull_request", "schedule", "workflow_dispatch"} <= set(triggers)
    gate, nightly = flow["jobs"]["regression-gate"], flow["jobs"]["nightly"]
    assert "pull_request" in gate["if"] and "!=" in nightly["if"]
    assert any("gradprobe compare" in line for line in steps(gate))
    assert [line.split()[:2] for line in steps(nightly)] == [["make", "bench"],
                                                              ["make", "publish"]]
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in nightly["steps"])


@pytest.mark.parametrize("job", ["regression-gate", "nightly"])
def test_every_command_it_calls_exists(job):
    flow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    targets = set(re.findall(r"(?m)^([a-z-]+):", (REPO / "Makefile").read_text()))
    for line in steps(flow["jobs"][job]):
        words = shlex.split(line)
        if words[0] == "make":
            assert words[1] in targets, line
        elif words[0].endswith("bin/gradprobe"):
            build_parser().parse_args(words[1:])  # exits 2 on an unknown verb or option
        else:
            assert words[0] == "rm", line
