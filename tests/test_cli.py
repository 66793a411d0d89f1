"""The `sslcourse` command: info, pretrain (table and JSON), bad input, Ctrl-C and divergence."""

import json
import subprocess
import sys

import pytest
import torch

import sslcourse
from sslcourse import cli, recipes
from sslcourse.evaluate import Accuracy, verdict, verdict_table
from sslcourse.registry import PRETRAINABLE, REGISTRY


def run_cli(*args: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "sslcourse", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_info_describes_the_runtime():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    assert "sslcourse on cpu" in out.stdout and "torch" in out.stdout


def test_unknown_method_is_refused_with_the_choices():
    out = run_cli("pretrain", "nosuchmethod")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "dae" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


# --------------------------------------------------------------------------- bad values: one line, exit code 2
BAD_VALUES = [
    # (arguments, the option named, what the message says is accepted)
    (["pretrain", "dae", "--budget", "-1"], "--budget", "positive finite number"),
    (["pretrain", "dae", "--budget", "nan"], "--budget", "positive finite number"),
    (["pretrain", "dae", "--epochs", "0"], "--epochs", "positive whole number"),
    (["pretrain", "dae", "--steps", "0"], "--steps", "positive whole number"),
    (["pretrain", "dae", "--steps", "ten"], "--steps", "positive whole number"),
    (["pretrain", "dae", "--batch-size", "0"], "--batch-size", "positive whole number"),
    (["pretrain", "dae", "--size", "0"], "--size", "from 1 to 1024"),
    (["pretrain", "dae", "--lr", "nan"], "--lr", "positive finite number"),
    (["pretrain", "dae", "--lr", "-1"], "--lr", "positive finite number"),
    (["pretrain", "dae", "--lr", "inf"], "--lr", "positive finite number"),
    (["pretrain", "dae", "--data", "imagenet"], "--data", "known datasets: digits, photos, cifar10"),
    (["pretrain", "dae", "--device", "tpu"], "--device", "expected cpu, cuda, cuda:N or mps (available here: cpu"),
    (["info", "--device", "bogus"], "--device", "expected cpu, cuda, cuda:N or mps (available here: cpu"),
    (["pretrain", "dae", "--seed", "-1"], "--seed", "from 0 to 2**63 - 1"),
    (["pretrain", "dae", "--threads", "0"], "--threads", "positive whole number"),
]


@pytest.mark.parametrize("argv, option, accepted", BAD_VALUES, ids=[" ".join(a[2:] or a) for a, _, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_option_value_and_what_is_accepted(argv, option, accepted, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(recipes, "load_dataset", lambda *a, **k: loaded.append(a))  # nothing may be loaded
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    value = argv[argv.index(option) + 1]
    assert f"argument {option}: " in lines[0] and repr(value) in lines[0] and accepted in lines[0], lines[0]
    assert loaded == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_which_devices_are_available(capsys):
    assert cli.main(["pretrain", "dae", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --device: device 'cuda' is not available here; available: cpu" in err


def test_a_bad_device_in_the_environment_is_refused_like_the_option(capsys, monkeypatch):
    monkeypatch.setenv("SSLCOURSE_DEVICE", "bogus")
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SSLCOURSE_DEVICE" in err and "'bogus'" in err


def test_bad_values_end_to_end_show_no_traceback():
    for args in (["pretrain", "dae", "--lr", "nan"], ["pretrain", "simclr", "--data", "imagenet"], ["info", "--device", "tpu"]):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""


def test_help_and_version_return_zero(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("sslcourse ")
    assert cli.main(["pretrain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "at 1%, 10% and 100% of the labels" in text and "%%" not in text, text[:400]


# --------------------------------------------------------------------------- Ctrl-C and divergence
def test_ctrl_c_during_pretraining_stops_with_130_and_one_line(capsys, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipes, "fit", interrupted)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", "dae", "--steps", "5", "--quiet"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "interrupted" in captured.err and "nothing was saved" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_run_is_reported_with_advice_and_not_probed(capsys, monkeypatch):
    probed = []
    monkeypatch.setattr(recipes, "compare_representations", lambda *a, **k: probed.append(1) or {})
    assert cli.main(["pretrain", "dae", "--lr", "1e6", "--steps", "3", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and probed == []
    assert captured.err.count("\n") == 1, captured.err
    assert "diverged" in captured.err and "--lr smaller than 1e+06" in captured.err


def test_arguments_that_do_not_fit_the_method_are_one_line_and_exit_2(capsys):
    # an image side the conv encoder cannot take (two stride-2 layers need a multiple of 4)
    assert cli.main(["pretrain", "simclr", "--size", "6", "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sslcourse pretrain: cannot build simclr")


# --------------------------------------------------------------------------- recipes the CLI uses
def test_the_stopping_rule_given_replaces_the_recipes():
    parse = cli._parser().parse_args
    default = cli.recipe_from_args(parse(["pretrain", "simclr"]), "cpu")
    assert default == REGISTRY["simclr"].cpu and default.steps is not None
    by_time = cli.recipe_from_args(parse(["pretrain", "simclr", "--budget", "30"]), "cpu")
    assert (by_time.steps, by_time.epochs, by_time.budget) == (None, None, 30.0)
    both = cli.recipe_from_args(parse(["pretrain", "simclr", "--budget", "30", "--steps", "50"]), "cpu")
    assert (both.steps, both.budget) == (50, 30.0)
    other = cli.recipe_from_args(parse(["pretrain", "colorization", "--data", "digits", "--lr", "0.01"]), "cpu")
    assert (other.data, other.size, other.probe_data, other.lr) == ("digits", None, None, 0.01)


@pytest.mark.slow
def test_pretrain_json_has_every_row_probe_and_fraction(capsys):
    assert cli.main(["pretrain", "dae", "--data", "digits", "--steps", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "dae" and result["data"] == "digits" and result["pretrain_steps"] == 20
    assert result["pretrain_seconds"] > 0 and result["recipe"]["steps"] == 20
    assert set(result["rows"]) == {"dae", "ae", "random_init", "raw_pixels"}
    rows = {}
    for name, row in result["rows"].items():
        assert set(row) == {"linear", "knn"}
        for probe, cells in row.items():
            assert set(cells) == {"0.01", "0.1", "1.0"}
            for fraction, cell in cells.items():
                assert {"mean", "std", "values", "spread_of"} <= set(cell) and 0.0 <= cell["mean"] <= 1.0 and cell["std"] > 0
                assert len(cell["values"]) == (1 if fraction == "1.0" else 5)
                assert cell["spread_of"] == ("1000 bootstrap resamples of the 360 test images" if fraction == "1.0" else "5 labelled subsets")
            rows.setdefault(name, {})[probe] = {f: Accuracy.from_dict(cell) for f, cell in cells.items() if f != "1.0"}
    # 10 digit classes: every representation does far better than chance with all labels
    assert all(row["linear"]["1.0"]["mean"] > 0.5 for row in result["rows"].values())
    # the verdicts follow from the accuracies in the JSON
    assert set(result["verdicts"]) == {"ae", "random_init", "raw_pixels"}
    for other, probes in result["verdicts"].items():
        for probe, cells in probes.items():
            for fraction, cell in cells.items():
                if fraction != "1.0":  # rebuilt from the subsets' accuracies in the JSON
                    assert cell["verdict"] == verdict(rows["dae"][probe][fraction], rows[other][probe][fraction])
                else:  # the bootstrap's resamples stay out of the JSON: the verdict follows from the gap and its spread
                    expected = "beats" if cell["gap"] > cell["gap_std"] else "is beaten by" if -cell["gap"] > cell["gap_std"] else "within the spread of"
                    assert cell["verdict"] == expected, cell
    assert "5 labelled subsets" in result["spread"] and "bootstrap" in result["spread"]


@pytest.mark.slow
def test_the_same_seed_gives_the_same_accuracies(capsys):
    results = []
    for _ in range(2):
        assert cli.main(["pretrain", "simclr", "--steps", "15", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["rows"] == results[1]["rows"] and results[0]["pretrain_steps"] == 15
    assert results[0]["verdicts"] == results[1]["verdicts"]


@pytest.mark.slow
@pytest.mark.parametrize("threads", [None, 1, 2])
def test_pretrain_trains_on_the_threads_asked_for_and_restores_them(threads, capsys):
    before = torch.get_num_threads()
    args = ["pretrain", "dae", "--steps", "3", "--json"]
    if threads is not None:
        args += ["--threads", str(threads)]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    n = before if threads is None else threads
    expected = f"{n} torch thread{'s' if n != 1 else ''}"
    assert result["runtime"].endswith(expected), result["runtime"]
    assert torch.get_num_threads() == before, "pretrain must restore the caller's torch threads"


@pytest.mark.slow
def test_pretrain_prints_a_table_with_steps_and_seconds(capsys):
    assert cli.main(["pretrain", "dae", "--steps", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("dae pretrained on digits for 5 steps in ") and " s (sslcourse on cpu" in lines[0]
    header = next(line for line in lines if line.startswith("representation"))
    assert "linear @ 1%" in header and "knn @ 100%" in header
    for name in ("dae", "ae", "random_init", "raw_pixels"):
        row = next((line for line in lines if line.split()[:1] == [name] and "pretrained" not in line), None)
        assert row is not None and row.count("±") == 6, f"no row for {name} with 6 'mean ± spread' cells in:\n{out}"
    assert any(line.startswith("± is the sample standard deviation: at 1% and 10% of the labels over 5 labelled subsets")
               and "at 100% of the labels over 1000 bootstrap resamples" in line for line in lines), out
    for probe in ("linear", "knn"):
        for fraction in ("1%", "10%", "100%"):
            line = next(line for line in lines if line.startswith(f"  {probe} @ {fraction}: dae "))
            assert all(other in line for other in ("random_init", "raw_pixels", "ae")), line


def test_missing_dataset_offline_fails_with_the_clear_error(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SSLCOURSE_DATA", str(tmp_path))
    assert cli.main(["pretrain", "dae", "--data", "cifar10", "--steps", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sslcourse: ") and "CIFAR-10" in err
    assert str(tmp_path / "cifar10") in err and "data_batch_1" in err


@pytest.mark.slow
def test_pretrain_a_colour_method_probes_it_on_digits_at_its_layer(capsys):
    assert cli.main(["pretrain", "colorization", "--steps", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "photos" and result["probe_data"] == "digits" and result["probe_layer"] == 3
    assert set(result["rows"]) == {"colorization", "random_init", "raw_pixels"}
    assert all(row["linear"]["1.0"]["mean"] > 0.5 for row in result["rows"].values())


def test_every_cli_method_has_a_recipe_and_builds():
    from sslcourse.recipes import build_method, default_recipe

    for name in PRETRAINABLE:
        recipe = default_recipe(name)
        train = sslcourse.load_dataset(recipe.data, "train", size=recipe.size).subset(torch.arange(64))
        for built in (name, *REGISTRY[name].compared_with):
            method = build_method(built, train, recipe.widths)
            assert hasattr(method, "encoder") and callable(method.training_step)
            method.on_epoch_start(0)  # what fit calls first (DeepCluster clusters there)
            out = method.training_step((train.floats()[:8], train.labels[:8]))
            assert torch.isfinite(out["loss"]), f"{built}: loss {out['loss']}"


def test_pretrain_and_probe_rows_baselines_and_model():
    from sslcourse.methods import DenoisingAutoencoder
    from sslcourse.recipes import default_recipe, pretrain_and_probe

    result = pretrain_and_probe(
        "dae", default_recipe("dae", "cpu", steps=5), device="cpu", baselines=("random_init",),
        fractions=(0.1,), probes=("linear",), repeats=1,
    )
    assert set(result["rows"]) == {"dae", "random_init"}
    assert set(result["rows"]["dae"]) == {"linear"} and set(result["rows"]["dae"]["linear"]) == {"0.1"}
    cell = result["rows"]["dae"]["linear"]["0.1"]
    assert isinstance(cell, Accuracy) and 0.0 <= cell <= 1.0 and cell.values == (float(cell),)
    # one labelled subset has no spread: the verdict says so instead of guessing
    assert result["verdicts"] == {"random_init": {"linear": {"0.1": {"verdict": "no spread", "gap": None, "gap_std": None}}}}
    assert isinstance(result["model"], DenoisingAutoencoder)
    with pytest.raises(ValueError, match="unknown baselines"):
        pretrain_and_probe("dae", baselines=("imagenet",))


def test_nproc_trains_on_two_processes_and_prints_one_result(tmp_path):
    import json as _json
    import os as _os
    import subprocess as _subprocess
    import sys as _sys

    env = {**_os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = _subprocess.run([_sys.executable, "-m", "sslcourse", "pretrain", "dae", "--steps", "3", "--nproc", "2", "--json"],
                           capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # process 0 speaks for both
    result = _json.loads(lines[0])
    assert result["pretrain_steps"] == 3 and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- mean ± spread and verdicts, without training
def made_up_result() -> dict:
    """What pretrain_and_probe returns, with accuracies written by hand: "ours" clearly above random init at 10%,
    tied with raw pixels, and one 100% cell from bootstrap resamples."""
    subsets = "5 stratified subsets of 0.1 of the labels (seeds 0-4), labels #test"
    resamples = "4 bootstrap resamples (seed 0) of the test images, labels #test"

    def cells(ten, full, replicates):
        return {"linear": {"0.1": Accuracy(ten, spread_of="5 labelled subsets", paired_on=subsets),
                           "1.0": Accuracy([full], replicates=replicates, spread_of="4 bootstrap resamples of the 8 test images",
                                           paired_on=resamples)}}

    rows = {
        "ours": cells([0.90, 0.92, 0.91, 0.93, 0.89], 0.875, [0.875, 0.75, 1.0, 0.875]),
        "random_init": cells([0.80, 0.83, 0.79, 0.82, 0.81], 0.75, [0.75, 0.625, 0.875, 0.75]),
        "raw_pixels": cells([0.91, 0.90, 0.92, 0.92, 0.90], 0.875, [0.875, 0.875, 0.875, 0.75]),
    }
    return {"method": "ours", "data": "digits", "recipe": {}, "pretrain_seconds": 1.0, "pretrain_steps": 3, "weights_growth": 1.0,
            "runtime": "sslcourse on cpu", "probe_data": "digits", "probe_layer": "all", "rows": rows,
            "verdicts": verdict_table(rows, "ours"), "model": None}


def test_the_table_shows_mean_and_spread_a_legend_and_the_verdicts(capsys, monkeypatch):
    monkeypatch.setattr(recipes, "pretrain_and_probe", lambda *a, **k: made_up_result())
    assert cli.main(["pretrain", "dae", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in lines
             if line.split()[:1] in (["ours"], ["random_init"], ["raw_pixels"]) and "pretrained" not in line}
    assert table == {"ours": ["91.0", "±", "1.6", "87.5", "±", "10.2"], "random_init": ["81.0", "±", "1.6", "75.0", "±", "10.2"],
                     "raw_pixels": ["91.0", "±", "1.0", "87.5", "±", "6.2"]}
    assert ("± is the sample standard deviation: at 10% of the labels over 5 labelled subsets (the same subsets for every row); "
            "at 100% of the labels over 4 bootstrap resamples of the 8 test images") in "\n".join(lines)
    assert "  linear @ 10%: ours beats random_init (+10.0 ± 1.6), is within the spread of raw_pixels (+0.0 ± 1.4)" in lines
    assert "  linear @ 100%: ours beats random_init (+12.5 ± 0.0), is within the spread of raw_pixels (+0.0 ± 12.0)" in lines


def test_the_json_carries_every_cell_with_its_spread(capsys, monkeypatch):
    made_up = made_up_result()
    monkeypatch.setattr(recipes, "pretrain_and_probe", lambda *a, **k: made_up_result())
    assert cli.main(["pretrain", "dae", "--json"]) == 0
    text = capsys.readouterr().out
    result = json.loads(text)  # strict JSON: no NaN
    assert "NaN" not in text and "model" not in result
    for row, probes in made_up["rows"].items():
        for probe, cells in probes.items():
            for fraction, acc in cells.items():
                cell = result["rows"][row][probe][fraction]
                assert (cell["mean"], cell["std"], cell["values"], cell["spread_of"]) == (float(acc), acc.std, list(acc.values), acc.spread_of)
                if acc.replicates == acc.values:  # labelled subsets: the cell rebuilds itself
                    back = Accuracy.from_dict(cell)
                    assert back.replicates == acc.replicates and back.paired_on == acc.paired_on
                else:  # a bootstrap's resamples stay out of the short record, and the record says it cannot rebuild them
                    assert "replicates" not in cell
                    with pytest.raises(ValueError, match="replicates"):
                        Accuracy.from_dict(cell)
    assert result["verdicts"]["random_init"]["linear"]["0.1"]["verdict"] == "beats"
    assert result["verdicts"]["raw_pixels"]["linear"]["0.1"]["verdict"] == "within the spread of"
    assert result["verdicts"] == json.loads(json.dumps(made_up["verdicts"]))
