"""The `nas` command line: version and dataset inspection, with clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nas import __version__
from service.cli import app

runner = CliRunner()


def test_version_from_the_installed_entry_point() -> None:
    nas = Path(sys.executable).with_name("nas")
    result = subprocess.run([str(nas), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"nas-service {__version__}"


def test_data_show_digits_prints_splits_and_classes() -> None:
    result = runner.invoke(app, ["data", "show", "digits"])
    assert result.exit_code == 0, result.output
    for text in ("train", "1295", "val", "359", "holdout", "143", "classes: 10", "32x32"):
        assert text in result.output


def test_data_show_json(data_root: Path) -> None:
    result = runner.invoke(
        app, ["data", "show", "synthetic", "--json", "--resolution", "16", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["resolution"] == 16 and summary["seed"] == 3
    assert [s["name"] for s in summary["splits"]] == ["train", "val", "holdout"]


def test_data_show_bad_input_is_one_clear_line(data_root: Path) -> None:
    unknown = runner.invoke(app, ["data", "show", "mnist"])
    assert unknown.exit_code == 2
    assert "kind" in unknown.output and "digits" in unknown.output
    assert "Traceback" not in unknown.output
    escape = runner.invoke(
        app, ["data", "show", "cifar10", "--root", "../..", "--data-root", str(data_root)]
    )
    assert escape.exit_code == 2 and "outside the data root" in escape.output
    fraction = runner.invoke(app, ["data", "show", "digits", "--holdout-fraction", "2"])
    assert fraction.exit_code == 2 and "holdout_fraction" in fraction.output


def test_space_list_names_every_registered_space() -> None:
    import search_spaces

    result = runner.invoke(app, ["space", "list"])
    assert result.exit_code == 0, result.output
    for name in search_spaces.names():
        assert name in result.output


def test_space_show_ofa_imagenet_summary() -> None:
    result = runner.invoke(app, ["space", "show", "ofa_mbv3", "--preset", "imagenet"])
    assert result.exit_code == 0, result.output
    for text in ("ofa_mbv3", "imagenet", "kernel", "expand", "depth", "subnets", "d4_e3_k3"):
        assert text in result.output
    as_json = runner.invoke(app, ["space", "show", "ofa_mbv3", "--preset", "imagenet", "--json"])
    summary = json.loads(as_json.output)
    assert summary["max_params"] == summary["reference_archs"]["max"]["params"]
    assert abs(summary["reference_archs"]["d4_e3_k3"]["macs"] / 226e6 - 1) < 0.01


def test_space_arch_prints_cost_of_a_given_arch(tmp_path: Path) -> None:
    import numpy as np

    import search_spaces

    space = search_spaces.get("ofa_mbv3", preset="tiny")
    arch = space.sample(np.random.default_rng(0))
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch.to_dict()))
    result = runner.invoke(app, ["space", "arch", "ofa_mbv3", str(path), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    cost = space.complexity(arch)
    assert (body["id"], body["macs"], body["params"]) == (space.arch_id(arch), *cost)
    inline = runner.invoke(app, ["space", "arch", "ofa_mbv3", json.dumps(arch.to_dict())])
    assert inline.exit_code == 0 and f"{cost.macs:,}" in inline.output


def test_space_commands_reject_bad_input_clearly(tmp_path: Path) -> None:
    import search_spaces

    unknown = runner.invoke(app, ["space", "show", "resnet"])
    assert unknown.exit_code == 2 and "ofa_mbv3" in unknown.output
    bad_preset = runner.invoke(app, ["space", "show", "ofa_mbv3", "--preset", "huge"])
    assert bad_preset.exit_code == 2 and "tiny" in bad_preset.output
    not_json = runner.invoke(app, ["space", "arch", "ofa_mbv3", "{not json"])
    assert not_json.exit_code == 2 and "not valid JSON" in not_json.output
    missing = runner.invoke(app, ["space", "arch", "ofa_mbv3", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "neither inline JSON nor a readable file" in missing.output
    incomplete = runner.invoke(app, ["space", "arch", "ofa_mbv3", '{"resolution": 32}'])
    assert incomplete.exit_code == 2 and "depth: Field required" in incomplete.output
    arch = search_spaces.get("ofa_mbv3", preset="tiny").reference_archs()["max"].to_dict()
    arch["resolution"] = 7
    invalid = runner.invoke(app, ["space", "arch", "ofa_mbv3", json.dumps(arch)])
    assert invalid.exit_code == 2 and "resolution" in invalid.output
    assert "Traceback" not in invalid.output


def _bombs() -> list[tuple[str, str, str]]:
    """(file name, text, reason): files that cost gigabytes or a RecursionError to parse."""
    lol = ", ".join(['"lol"'] * 9)
    laughs = [f"a: &a [{lol}]"]  # 9**10 strings once every alias is expanded
    laughs += [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in pairwise("abcdefghij")]
    deep = "[" * 10_000 + "]" * 10_000
    return [
        ("laughs.yaml", "\n".join(laughs), "YAML aliases are not accepted (line 2: *a)"),
        ("deep.yaml", f"name: {deep}", "nested deeper than 64 levels"),
        ("deep.json", f'{{"name": {deep}}}', "nested deeper than 64 levels"),
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["submit"],
        ["train"],
        ["search", "--table", "t.json", "--latency-ms", "1"],
        ["finetune", "--job-dir", "run", "--arch", "a"],
    ],
    ids=["submit", "train", "search", "finetune"],
)
def test_job_file_bombs_are_refused_at_once_in_one_line(command: list[str], tmp_path: Path) -> None:
    env = {"NAS_URL": "http://127.0.0.1:9", "COLUMNS": "500"}  # refused before any request
    for name, text, reason in _bombs():
        path = tmp_path / name
        path.write_text(text)
        started = time.perf_counter()
        result = runner.invoke(app, [command[0], str(path), *command[1:]], env=env)
        took = time.perf_counter() - started
        assert result.exit_code == 2, (name, result.output)
        assert reason in result.output and str(path) in result.output, (name, result.output)
        assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
        assert took < 1.0, (name, took)
