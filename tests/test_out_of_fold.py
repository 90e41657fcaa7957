"""Out-of-fold learned detections for the fusion fit: the parts of the train half, models trained without one
part, and the rule fitted on what each model says about the photos it never saw."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter

import pytest

from bioscan_rebuild.cli.images import _fold
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.evaluate import dev_fold, dev_split, load_coco_ground_truth
from bioscan_rebuild.detect.heldout import fit_fusion, fold_key, out_of_fold, run_detectors
from bioscan_rebuild.detect.yolo.dataset import prepare_yolo_dataset
from bioscan_rebuild.detect.yolo.train import check_fold_models, read_fold_models
from bioscan_rebuild.synth.photos import draw_well_photo

TRUTH, WRONG = (100, 100, 200, 200), (600, 500, 700, 600)


def _det(box, score=0.8):
    return Detection("ok" if box else "no_object", box, score=score if box else 0.0, candidates=int(bool(box)))


def test_parts_are_fixed_by_the_processid_and_independent_of_the_halves():
    pids = [f"BIOUG{i:05d}-A01" for i in range(4000)]
    for folds in (2, 4):
        parts = [dev_fold(pid, folds) for pid in pids]
        assert parts == [dev_fold(pid, folds) for pid in pids]
        assert set(parts) == set(range(folds))
        assert parts == [int(hashlib.md5(pid.encode()).hexdigest()[3], 16) % folds for pid in pids]
        # each part holds about its share of either half: the parts do not follow the halves
        for half in ("train", "holdout"):
            counts = Counter(p for pid, p in zip(pids, parts, strict=True) if dev_split(pid) == half)
            total = sum(counts.values())
            assert all(abs(counts[p] / total - 1 / folds) < 0.05 for p in range(folds)), counts
    with pytest.raises(ValueError, match="at least 2"):
        dev_fold("x", 1)


def _row(pid, truth, learned, learned_tta, **more):
    return {
        "folder": "dev",
        "file_name": f"{pid}.jpg",
        "processid": pid,
        "half": dev_split(pid),
        "image_class": "valid",
        "truth": truth,
        "polygon_area": None,
        "shape": (768, 1024),
        "classical": _det(WRONG, 150.0),
        "learned": learned,
        "learned_tta": learned_tta,
        **more,
    }


def _pids(half, n):
    return [pid for pid in (f"P{i:04d}" for i in range(1000)) if dev_split(pid) == half][:n]


def test_out_of_fold_rows_take_the_train_half_from_the_model_that_left_it_out():
    """The full model saw the train half and is right on all of it; the models that did not see a photo are right
    on half. Out of fold, the rule sees (and its fit reports) the second, the full model's holdout stays."""
    rows = []
    for i, pid in enumerate(_pids("train", 40)):
        part = dev_fold(pid, 2)
        seen, unseen = _det(TRUTH), _det(TRUTH if i % 2 else WRONG)
        wrong_part = _det(None)  # what the other part's model would say: must never be used
        rows.append(
            _row(
                pid,
                TRUTH,
                seen,
                seen,
                **{fold_key(n, part): unseen for n in ("learned", "learned_tta")},
                **{fold_key(n, 1 - part): wrong_part for n in ("learned", "learned_tta")},
            )
        )
    rows += [_row(pid, TRUTH, _det(TRUTH), _det(TRUTH)) for pid in _pids("holdout", 10)]
    oof = out_of_fold(rows, 2)
    assert all("@" not in key for row in oof for key in row)
    assert [r["learned"].box for r in oof if r["half"] == "holdout"] == [TRUTH] * 10
    train = [r for r in oof if r["half"] == "train"]
    assert sum(r["learned"].box == TRUTH for r in train) == 20 and all(r["learned"].box for r in train)
    assert fit_fusion(rows)[1]["specimens_right"] == 1.0  # the rule's own model, on photos it learned
    assert fit_fusion(oof)[1]["specimens_right"] == 0.5
    # run_detectors leaves None where a fold model did not run: a photo without its part's detection is refused
    missing = [{k: (None if k.startswith("learned_tta@") else v) for k, v in r.items()} for r in rows]
    with pytest.raises(ValueError, match="no learned_tta@"):
        out_of_fold(missing, 2)


class _Counting:
    """A detector that records how many photos it was given."""

    def __init__(self):
        self.photos = 0

    def detect_batch(self, images, halves=None):
        self.photos += len(images)
        return [_det(None) for _ in images]


def test_run_detectors_runs_a_wanted_detector_on_its_photos_only(realdata):
    dev = realdata / "imgfilter-dev"
    everywhere, part0 = _Counting(), _Counting()

    def wanted(pid):
        return dev_split(pid) == "train" and dev_fold(pid, 2) == 0

    rows, _ = run_detectors([dev], {"all": everywhere, "part0": part0}, wanted={"part0": wanted})
    truths = load_coco_ground_truth(dev / "coco_annotations.json")
    assert everywhere.photos == len(rows) == len(truths)
    assert part0.photos == sum(wanted(t.processid) for t in truths) > 20
    assert all((row["part0"] is not None) == wanted(row["processid"]) for row in rows)


def test_a_fold_dataset_leaves_its_part_out_and_says_so(tmp_path, realdata):
    coco = realdata / "imgfilter-dev" / "coco_annotations.json"
    kept = {}
    for fold in (None, 0, 1):
        data_yaml = prepare_yolo_dataset(
            tmp_path / f"d{fold}",
            coco_path=coco,
            n_generated=2,
            seed=0,
            draw_photo=draw_well_photo,
            leave_out_fold=None if fold is None else (fold, 2),
        )
        kept[fold] = {p.name.split(".")[0] for p in data_yaml.parent.glob("images/*/*.jpg") if "gen" not in p.name}
        manifest = json.loads((data_yaml.parent / "manifest.json").read_text())
        if fold is None:
            assert "left_out_fold" not in manifest["real"]  # a full model's manifest as before
        else:
            assert manifest["real"]["left_out_fold"] == {"fold": fold, "folds": 2}
            assert all(dev_fold(pid, 2) != fold for pid in kept[fold])
    assert kept[0] | kept[1] == kept[None] and not kept[0] & kept[1] and kept[0] and kept[1]


def test_fold_models_must_cover_every_part_once():
    assert check_fold_models([("a", 0, 2), ("b", 1, 2)]) == 2
    with pytest.raises(ValueError, match="one model per part"):
        check_fold_models([("a", 0, 2), ("b", 0, 2)])
    with pytest.raises(ValueError, match="one model per part"):
        check_fold_models([("a", 0, 3), ("b", 1, 3)])
    with pytest.raises(ValueError, match="split the train half differently"):
        check_fold_models([("a", 0, 2), ("b", 1, 3)])


def test_fold_option_parses_i_of_k():
    assert _fold("1/3") == (1, 3)
    for bad in ("2/2", "0/1", "a/2", "1", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _fold(bad)


def _fake_trained(directory, fold=None, epochs=130):
    """A train-detector folder as read_fold_models sees it (the model file and its report)."""
    directory.mkdir()
    (directory / "model.onnx").write_bytes(f"model {fold} {epochs}".encode())
    real = {"coco_sha256": ["c"], "real_repeat": 2, "include_holdout": False, "copy_k_turned_k_quarter_turns": True}
    if fold is not None:
        real["left_out_fold"] = {"fold": fold, "folds": 2}
    report = {
        "model_yaml": "yolo11n.yaml",
        "train_args": {"epochs": epochs, "imgsz": 320, "batch": 16, "seed": 0, "deterministic": True},
        "dataset": {"seed": 0, "n_generated": 200, "jpeg_quality": 90, "real": real},
        "onnx": {"sha256": hashlib.sha256((directory / "model.onnx").read_bytes()).hexdigest()},
    }
    (directory / "report.json").write_text(json.dumps(report))
    return report


def test_fold_models_are_read_only_when_trained_like_the_model(tmp_path):
    main = _fake_trained(tmp_path / "main")
    _fake_trained(tmp_path / "f0", 0)
    _fake_trained(tmp_path / "f1", 1)
    models = read_fold_models(main, [tmp_path / "f1", tmp_path / "f0"])
    assert sorted((fold, folds) for _, fold, folds in models) == [(0, 2), (1, 2)]
    _fake_trained(tmp_path / "short", 1, epochs=20)
    with pytest.raises(ValueError, match="trained differently.*train_args.epochs"):
        read_fold_models(main, [tmp_path / "f0", tmp_path / "short"])
    with pytest.raises(ValueError, match="not trained with --leave-out-fold"):
        read_fold_models(main, [tmp_path / "f0", tmp_path / "main"])
    with pytest.raises(ValueError, match="differently from the first out-of-fold model.*train_args.epochs"):
        read_fold_models(None, [tmp_path / "f0", tmp_path / "short"])  # before the model exists: with each other
    (tmp_path / "f1" / "model.onnx").write_bytes(b"another model")
    with pytest.raises(ValueError, match="is not the model"):
        read_fold_models(main, [tmp_path / "f0", tmp_path / "f1"])


def _dry_run_train_detector(tmp_path, sample_dir, out_of_fold):
    import shutil

    import yaml

    from conftest import REPO, run_snakemake

    (tmp_path / "config").mkdir(parents=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train_detector"]["out_of_fold"] = out_of_fold
    # a dry run: the rules declare each dev folder's boxes and the classes table as inputs, so they must exist
    for name in ("dev-a", "dev-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "coco_annotations.json").write_text("{}")
    (tmp_path / "classes.csv").write_text("folder,file_name,imgfilter_class\n")
    config["train_detector"].update(dev_dirs=["dev-a", "dev-b"], classes="classes.csv")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    return run_snakemake(tmp_path, "--dry-run", "--printshellcmds", "train_detector", check=False)


def test_the_workflow_trains_the_out_of_fold_models_first_with_the_same_recipe(tmp_path, sample_dir):
    import re

    result = _dry_run_train_detector(tmp_path / "k2", sample_dir, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    # what training reads is declared (an edit to the boxes or classes trains again)
    assert result.stdout.count("input: dev-a/coco_annotations.json, dev-b/coco_annotations.json, classes.csv") == 3
    commands = [line for line in result.stdout.splitlines() if " train-detector " in line]
    assert len(commands) == 3
    recipe = {re.sub(r" --(out|leave-out-fold|out-of-fold) \S+| > .*", "", c) for c in commands}
    assert len(recipe) == 1  # the same options for all three
    assert (
        sum(
            f"--out results/detector-fold{f}of2 " in c and f"--leave-out-fold {f}/2" in c
            for c in commands
            for f in (0, 1)
        )
        == 2
    )
    (main,) = [c for c in commands if "--out results/detector " in c]
    assert "--out-of-fold results/detector-fold0of2 --out-of-fold results/detector-fold1of2" in main
    off = _dry_run_train_detector(tmp_path / "k0", sample_dir, 0)
    assert off.returncode == 0 and off.stdout.count(" train-detector ") == 1 and "--out-of-fold" not in off.stdout
    one = _dry_run_train_detector(tmp_path / "k1", sample_dir, 1)
    assert one.returncode != 0 and "out_of_fold" in one.stdout + one.stderr  # one part is no out-of-fold split


def test_training_checks_its_out_of_fold_models_before_it_starts(tmp_path, realdata):
    from bioscan_rebuild.detect.yolo.train import prepare_and_train

    _fake_trained(tmp_path / "f0", 0)
    _fake_trained(tmp_path / "f1", 1)
    folds = [tmp_path / "f0", tmp_path / "f1"]
    dev = [realdata / "imgfilter-dev"]
    recipe = dict(draw_photo=draw_well_photo, generated=200, real_repeat=2, epochs=130, imgsz=320, batch=16, seed=0)
    with pytest.raises(ValueError, match=r"trained differently from this model.*'train_args.epochs': \(130, 20\)"):
        prepare_and_train(tmp_path / "m", dev, fold_dirs=folds, **{**recipe, "epochs": 20})
    with pytest.raises(ValueError, match="not with --no-eval"):
        prepare_and_train(tmp_path / "m", dev, fold_dirs=folds, score=False, **recipe)
    with pytest.raises(ValueError, match="takes no out-of-fold models"):
        prepare_and_train(tmp_path / "m", dev, fold_dirs=folds, leave_out_fold=(0, 2), **recipe)
    with pytest.raises(ValueError, match="needs the real dev sets"):
        prepare_and_train(tmp_path / "m", None, real=False, leave_out_fold=(0, 2), **recipe)
    assert not (tmp_path / "m").exists()  # refused before any work
