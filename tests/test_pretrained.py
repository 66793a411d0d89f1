"""The long runs: the script that makes them (benchmarks/long_runs.py), the loader that ships them
(sslcourse.pretrained and sslcourse.long_runs), and the checkpoints that ship in sslcourse/pretrained/."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import sslcourse
from sslcourse import long_runs
from sslcourse.long_runs import PretrainedError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "long_runs.py"
METHODS = ["simclr", "rotation"]
#: A trial: 3 steps, one thread, one probe cell over two labelled subsets.
QUICK = ["--steps", "3", "--threads", "1", "--fractions", "0.1", "--probes", "linear", "--repeats", "2", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_script():
    spec = importlib.util.spec_from_file_location("long_runs_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="module")
def made(tmp_path_factory, script):
    """One trial of the script: two methods, seed 0, into a fresh folder. Returns (out, work, entries)."""
    root = tmp_path_factory.mktemp("long_runs")
    out, work = root / "out", root / "work"
    entries = script.main(["--methods", *METHODS, "--seeds", "0", "--out", str(out), "--work", str(work), *QUICK])
    return out, work, entries


def copy_of(made, tmp_path) -> tuple[Path, Path]:
    out, work, _ = made
    shutil.copytree(out, tmp_path / "out")
    shutil.copytree(work, tmp_path / "work")
    return tmp_path / "out", tmp_path / "work"


def run(script, out: Path, work: Path, *extra: str, methods=METHODS) -> list[dict]:
    return script.main(["--methods", *methods, "--seeds", "0", "--out", str(out), "--work", str(work), *QUICK, *extra])


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the script
def test_script_writes_checkpoints_and_a_manifest_with_their_checksums(made, script):
    out, work, entries = made
    assert [(e["method"], e["seed"]) for e in entries] == [(m, 0) for m in METHODS]
    data = json.loads((out / "manifest.json").read_text())
    assert data["format"] == long_runs.FORMAT
    assert sorted(data["checkpoints"]) == sorted(f"{m}-seed0" for m in METHODS)
    for name in METHODS:
        entry = data["checkpoints"][f"{name}-seed0"]
        path = out / entry["file"]
        assert entry["file"] == f"{name}-seed0.pt"
        assert entry["sha256"] == file_sha256(path)
        assert entry["bytes"] == path.stat().st_size
        assert entry["recipe"] == script.long_recipe(name, 3).to_dict()
        assert entry["steps"] == 3 and entry["resumed_from_step"] == 0
        assert entry["seconds"] > 0
        assert entry["package_version"] == sslcourse.__version__ and entry["torch_version"] == torch.__version__
        assert entry["machine"]["torch_threads"] == 1 and entry["machine"]["cpu_count"] >= 1
        assert len(entry["machine"]["load_average_start"]) == len(entry["machine"]["load_average_end"]) == 3
        assert entry["probe"]["fractions"] == [0.1] and entry["probe"]["repeats"] == 2
        assert set(entry["rows"]) == {name, "random_init", "raw_pixels"}
        for row in entry["rows"].values():
            cell = row["linear"]["0.1"]
            assert 0.0 <= cell["mean"] <= 1.0
            if "values" in cell:  # the accuracy of each labelled subset, and their mean
                assert len(cell["values"]) == 2 and cell["mean"] == pytest.approx(sum(cell["values"]) / 2)


def test_shipped_weights_are_the_trained_encoder_in_fp16(made):
    out, work, _ = made
    for name in METHODS:
        encoder = sslcourse.pretrained(name, 0, folder=out)
        assert not encoder.training
        trained = torch.load(work / f"{name}-seed0.pt", weights_only=True)["model"]
        expected = {k.removeprefix("encoder."): v for k, v in trained.items() if k.startswith("encoder.")}
        loaded = encoder.state_dict()
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            want = value.half().to(value.dtype) if value.is_floating_point() else value
            assert torch.equal(loaded[key], want), f"{name}: {key} differs from the trained weights rounded to fp16"
        saved = torch.load(out / f"{name}-seed0.pt", weights_only=True)
        assert all(v.dtype == torch.float16 for v in saved.values() if v.is_floating_point())


def test_reprobing_a_checkpoint_gives_its_manifest_accuracy(made):
    out, _, _ = made
    for name in METHODS:
        entry = long_runs.pretrained_info(name, 0, folder=out)
        again = long_runs.reprobe(name, 0, folder=out)
        assert again["linear"]["0.1"]["mean"] == pytest.approx(entry["rows"][name]["linear"]["0.1"]["mean"], abs=1e-6)


def test_probed_encoder_is_the_recipes_layer(made, script):
    out, _, _ = made
    probed = sslcourse.pretrained("rotation", 0, probed=True, folder=out)
    depth = script.long_recipe("rotation").probe_depth
    assert len(probed) == depth
    whole = sslcourse.pretrained("rotation", 0, folder=out)
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(probed(x), whole.layers[:depth](x))


def test_rerun_skips_finished_pairs(made, script, tmp_path):
    out, work = copy_of(made, tmp_path)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert run(script, out, work) == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


def test_a_pair_killed_before_it_shipped_is_finished_from_its_checkpoint(made, script, tmp_path):
    """A kill after training, before the weights and entry were written: the rerun ships it without
    training again, and the other pair is left alone."""
    out, work = copy_of(made, tmp_path)
    data = long_runs.manifest(out)
    lost = data["checkpoints"].pop("rotation-seed0")
    long_runs.write_manifest(data, out)
    (out / "rotation-seed0.pt").unlink()
    kept = long_runs.pretrained_info("simclr", 0, folder=out)

    written = run(script, out, work)

    assert [(e["method"], e["resumed_from_step"]) for e in written] == [("rotation", 3)]  # nothing retrained
    assert written[0]["sha256"] == lost["sha256"]  # the same weights as the first time
    assert written[0]["rows"] == lost["rows"]  # and the same accuracies
    assert long_runs.pretrained_info("simclr", 0, folder=out) == kept


def test_a_run_killed_mid_training_resumes_to_the_same_weights(script, tmp_path):
    """Killed after 2 of 4 steps (simulated by training 2 steps into the same work checkpoint), the
    rerun continues from step 2 and ships what an uninterrupted run of 4 steps ships."""
    killed_out, killed_work = tmp_path / "killed", tmp_path / "killed_work"
    script.train_pair("simclr", 0, script.long_recipe("simclr", 2), killed_work, progress=False)
    resumed = script.main(["--methods", "simclr", "--seeds", "0", "--out", str(killed_out), "--work", str(killed_work),
                           *QUICK, "--steps", "4"])
    whole = script.main(["--methods", "simclr", "--seeds", "0", "--out", str(tmp_path / "whole"),
                         "--work", str(tmp_path / "whole_work"), *QUICK, "--steps", "4"])
    assert resumed[0]["resumed_from_step"] == 2 and whole[0]["resumed_from_step"] == 0
    assert resumed[0]["steps"] == whole[0]["steps"] == 4
    assert resumed[0]["sha256"] == whole[0]["sha256"]
    assert resumed[0]["rows"] == whole[0]["rows"]


def test_script_refuses_bad_arguments(script, tmp_path, capsys):
    for argv in (["--methods", "nosuchmethod"], ["--steps", "0"], ["--seeds", "-1"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            script.main([*argv, "--out", str(tmp_path)])
        assert argv[0] in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_every_method_of_the_course_has_a_long_run_step_count(script):
    assert set(script.LONG_RUN_STEPS) == set(sslcourse.registry.PRETRAINABLE)
    for name, steps in script.LONG_RUN_STEPS.items():
        assert steps > sslcourse.registry.REGISTRY[name].cpu.steps, f"{name}: the long run is no longer than the live one"


# --------------------------------------------------------------------------- the loader
def test_pretrained_refuses_a_changed_or_missing_file(made, tmp_path):
    out, _ = copy_of(made, tmp_path)
    path = out / "simclr-seed0.pt"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(PretrainedError, match=r"simclr-seed0\.pt has sha256 .* but the manifest says"):
        sslcourse.pretrained("simclr", 0, folder=out)
    path.unlink()
    with pytest.raises(PretrainedError, match=r"simclr-seed0\.pt is listed in .* but missing"):
        sslcourse.pretrained("simclr", 0, folder=out)


def test_unknown_names_and_seeds_list_what_exists(made):
    out, _, _ = made
    with pytest.raises(PretrainedError, match=r"no long run of 'simclr' with seed 7.*: rotation \(seed 0\), simclr \(seed 0\)"):
        sslcourse.pretrained("simclr", 7, folder=out)
    with pytest.raises(PretrainedError, match=r"no long run of 'byol' ships.*simclr \(seed 0\)"):
        sslcourse.pretrained("byol", folder=out)
    with pytest.raises(PretrainedError, match=r"'SimCLR' is not a method of the course \(methods: dae, "):
        sslcourse.pretrained("SimCLR", folder=out)
    with pytest.raises(TypeError, match="seed must be an int, got '0'"):
        sslcourse.pretrained("simclr", "0", folder=out)


def test_an_empty_folder_says_none_has_been_made(tmp_path):
    assert long_runs.manifest(tmp_path) == {"format": long_runs.FORMAT, "checkpoints": {}}
    with pytest.raises(PretrainedError, match="none has been made yet"):
        sslcourse.pretrained("simclr", folder=tmp_path)


def test_a_damaged_manifest_is_named(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": 1, "checkpoints": {')
    with pytest.raises(PretrainedError, match=r"cannot read the long-run manifest .*manifest\.json"):
        long_runs.manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 99, "checkpoints": {}}')
    with pytest.raises(PretrainedError, match="not a long-run manifest of format 1 .found format 99"):
        long_runs.manifest(tmp_path)


def test_a_manifest_that_cannot_be_written_leaves_the_old_one(tmp_path):
    good = {"format": 1, "checkpoints": {"simclr-seed0": fake_entry("simclr", 0, 0.9)}}
    long_runs.write_manifest(good, tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    bad = {"format": 1, "checkpoints": {"simclr-seed0": fake_entry("simclr", 0, float("nan"))}}
    with pytest.raises(ValueError):
        long_runs.write_manifest(bad, tmp_path)
    assert (tmp_path / "manifest.json").read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_accuracy_record_of_a_plain_float_is_its_mean():
    assert long_runs.accuracy_record(0.875) == {"mean": 0.875}


def test_accuracy_record_keeps_the_spread_of_an_accuracy():
    Accuracy = getattr(sslcourse.evaluate, "Accuracy", None)
    if Accuracy is None:
        pytest.skip("sslcourse.evaluate has no Accuracy (compare_representations returns plain floats)")
    record = long_runs.accuracy_record(Accuracy([0.8, 0.9], spread_of="2 labelled subsets"))
    assert record["mean"] == pytest.approx(0.85) and record["values"] == [0.8, 0.9]
    assert record["std"] == pytest.approx(0.1 / 2**0.5)  # sample std of two values 0.1 apart
    assert record["spread_of"] == "2 labelled subsets"
    assert long_runs.accuracy_record(Accuracy([0.8], spread_of="1 labelled subset"))["std"] is None  # JSON has no NaN


# --------------------------------------------------------------------------- over seeds
def fake_entry(method: str, seed: int, linear: float, steps: int = 100) -> dict:
    """A manifest entry with only what summarize reads: the probe cells given here."""
    cells = {"linear": {"0.1": {"mean": linear}}}
    return {"method": method, "seed": seed, "file": f"{method}-seed{seed}.pt", "recipe": {"steps": steps}, "steps": steps,
            "seconds": 10.0 * (seed + 1), "probe": {"repeats": 5},
            "rows": {method: cells, "random_init": {"linear": {"0.1": {"mean": 0.5}}}}}


def test_summarize_gives_mean_and_sample_std_over_seeds(tmp_path):
    entries = {f"byol-seed{s}": fake_entry("byol", s, acc) for s, acc in zip((2, 0, 1), (0.94, 0.90, 0.92))}
    entries["simclr-seed0"] = fake_entry("simclr", 0, 0.5)
    long_runs.write_manifest({"format": 1, "checkpoints": entries}, tmp_path)
    summary = long_runs.summarize("byol", folder=tmp_path)
    assert summary["seeds"] == [0, 1, 2] and summary["steps"] == 100
    assert summary["seconds"] == pytest.approx(20.0)
    cell = summary["rows"]["byol"]["linear"]["0.1"]
    assert cell["values"] == [0.90, 0.92, 0.94]
    assert cell["mean"] == pytest.approx(0.92)
    assert cell["std"] == pytest.approx(0.02)  # sqrt(((-0.02)^2 + 0 + 0.02^2) / (3 - 1))
    assert summary["rows"]["random_init"]["linear"]["0.1"]["std"] == 0.0
    one = long_runs.summarize("simclr", folder=tmp_path)
    assert one["rows"]["simclr"]["linear"]["0.1"] == {"mean": 0.5, "std": None, "values": [0.5]}


def test_summarize_refuses_runs_of_different_recipes_and_unknown_methods(tmp_path):
    entries = {"byol-seed0": fake_entry("byol", 0, 0.9), "byol-seed1": fake_entry("byol", 1, 0.9, steps=50)}
    long_runs.write_manifest({"format": 1, "checkpoints": entries}, tmp_path)
    with pytest.raises(PretrainedError, match="differ in recipe between seeds 0 and 1"):
        long_runs.summarize("byol", folder=tmp_path)
    with pytest.raises(PretrainedError, match=r"no long run of 'dino'.*byol \(seeds 0, 1\)"):
        long_runs.summarize("dino", folder=tmp_path)


# --------------------------------------------------------------------------- the shipped checkpoints
def test_the_checkpoints_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(config["tool"]["setuptools"]["package-data"]["sslcourse"]) >= {"pretrained/*.pt", "pretrained/manifest.json"}
    assert long_runs.PACKAGE_FOLDER == Path(sslcourse.__file__).parent / "pretrained"


SHIPPED = long_runs.available()
NONE_SHIPS = "no long-run checkpoint ships in sslcourse/pretrained/ yet (benchmarks/long_runs.py makes them)"


@pytest.mark.parametrize("name, seed", SHIPPED or [pytest.param(None, None, marks=pytest.mark.skip(reason=NONE_SHIPS))])
def test_shipped_checkpoint_loads_and_matches_its_checksum(name, seed):
    entry = long_runs.pretrained_info(name, seed)
    path = long_runs.PACKAGE_FOLDER / entry["file"]
    assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
    encoder = sslcourse.pretrained(name, seed)
    assert not encoder.training


@pytest.mark.parametrize("name, seed", SHIPPED or [pytest.param(None, None, marks=pytest.mark.skip(reason=NONE_SHIPS))])
def test_shipped_checkpoint_reproduces_its_linear_probe_at_10_percent(name, seed):
    entry = long_runs.pretrained_info(name, seed)
    again = long_runs.reprobe(name, seed, fractions=(0.1,), probes=("linear",))
    assert again["linear"]["0.1"]["mean"] == pytest.approx(entry["rows"][name]["linear"]["0.1"]["mean"], abs=1e-6)


@pytest.mark.parametrize("name, seed", SHIPPED or [pytest.param(None, None, marks=pytest.mark.skip(reason=NONE_SHIPS))])
def test_shipped_checkpoint_was_made_by_the_current_recipe(name, seed, script):
    entry = long_runs.pretrained_info(name, seed)
    assert entry["recipe"] == script.long_recipe(name).to_dict(), (
        f"the CPU recipe of {name} changed since its long run: rerun "
        f"'python benchmarks/long_runs.py --methods {name} --seeds {seed}'"
    )
    assert entry["machine"]["torch_threads"] == script.THREADS
    assert entry["probe"]["fractions"] == [0.01, 0.1, 1.0] and entry["probe"]["probes"] == ["linear", "knn"]
