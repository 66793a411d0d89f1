"""The `sslcourse` command: info, pretrain (table and JSON), and bad input."""

import json
import subprocess
import sys

import pytest
import torch

import sslcourse
from sslcourse import cli


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sslcourse", *args], capture_output=True, text=True, timeout=600)


def test_info_describes_the_runtime():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    assert "sslcourse on cpu" in out.stdout and "torch" in out.stdout


def test_unknown_method_is_refused_with_the_choices():
    out = run_cli("pretrain", "nosuchmethod")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "dae" in out.stderr


@pytest.mark.slow
def test_pretrain_json_has_every_row_probe_and_fraction(capsys):
    assert cli.main(["pretrain", "dae", "--data", "digits", "--budget", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "dae" and result["data"] == "digits"
    assert 3 <= result["pretrain_seconds"] < 60
    assert set(result["rows"]) == {"dae", "ae", "random_init", "raw_pixels"}
    for row in result["rows"].values():
        assert set(row) == {"linear", "knn"}
        for probe in row.values():
            assert set(probe) == {"0.01", "0.1", "1.0"}
            assert all(0.0 <= acc <= 1.0 for acc in probe.values())
    # 10 digit classes: every representation does far better than chance with all labels
    assert all(row["linear"]["1.0"] > 0.5 for row in result["rows"].values())


@pytest.mark.slow
@pytest.mark.parametrize("threads", [None, 1, 2])
def test_pretrain_trains_on_the_threads_asked_for_and_restores_them(threads, capsys):
    before = torch.get_num_threads()
    args = ["pretrain", "dae", "--budget", "1", "--json"]
    if threads is not None:
        args += ["--threads", str(threads)]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    n = before if threads is None else threads
    expected = f"{n} torch thread{'s' if n != 1 else ''}"
    assert result["runtime"].endswith(expected), result["runtime"]
    assert torch.get_num_threads() == before, "pretrain must restore the caller's torch threads"


def test_pretrain_refuses_zero_threads(capsys):
    assert cli.main(["pretrain", "dae", "--threads", "0"]) == 2
    assert "--threads expects a positive number" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_prints_a_table(capsys):
    assert cli.main(["pretrain", "dae", "--budget", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("representation"))
    assert "linear @ 1%" in header and "knn @ 100%" in header
    for name in ("dae", "ae", "random_init", "raw_pixels"):
        assert any(line.split()[:1] == [name] for line in lines), f"no row for {name} in:\n{out}"


def test_missing_dataset_offline_fails_with_the_clear_error(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SSLCOURSE_DATA", str(tmp_path))
    assert cli.main(["pretrain", "dae", "--data", "cifar10", "--budget", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sslcourse: ") and "CIFAR-10" in err
    assert str(tmp_path / "cifar10") in err and "data_batch_1" in err


@pytest.mark.slow
def test_pretrain_a_colour_method_probes_it_on_digits_at_its_layer(capsys):
    assert cli.main(["pretrain", "colorization", "--budget", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "photos" and result["probe_data"] == "digits" and result["probe_layer"] == 3
    assert set(result["rows"]) == {"colorization", "random_init", "raw_pixels"}
    assert all(row["linear"]["1.0"] > 0.5 for row in result["rows"].values())


def test_every_cli_method_has_a_recipe_and_builds():
    from sslcourse.recipes import build_method, default_recipe

    for name in cli.PRETRAINABLE:
        for device in ("cpu", "cuda"):
            recipe = default_recipe(name, device)
            assert recipe.budget or recipe.epochs
        recipe = default_recipe(name)
        train = sslcourse.load_dataset(recipe.data, "train", size=recipe.size).subset(torch.arange(64))
        for built in (name, *cli.COMPARED_WITH.get(name, [])):
            method = build_method(built, train, recipe.widths)
            assert hasattr(method, "encoder") and callable(method.training_step)
            out = method.training_step((train.floats()[:8], train.labels[:8]))
            assert torch.isfinite(out["loss"]), f"{built}: loss {out['loss']}"


def test_pretrain_and_probe_rows_baselines_and_model():
    from sslcourse.methods import DenoisingAutoencoder
    from sslcourse.recipes import default_recipe, pretrain_and_probe

    result = pretrain_and_probe(
        "dae", default_recipe("dae", "cpu", budget=1), device="cpu", baselines=("random_init",),
        fractions=(0.1,), probes=("linear",), repeats=1,
    )
    assert set(result["rows"]) == {"dae", "random_init"}
    assert set(result["rows"]["dae"]) == {"linear"} and set(result["rows"]["dae"]["linear"]) == {"0.1"}
    assert 0.0 <= result["rows"]["dae"]["linear"]["0.1"] <= 1.0
    assert isinstance(result["model"], DenoisingAutoencoder)
    with pytest.raises(ValueError, match="unknown baselines"):
        pretrain_and_probe("dae", baselines=("imagenet",))
