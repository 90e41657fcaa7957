"""Offline training from scratch, ONNX export, and scoring of both backends on the dev holdout half."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.detect.evaluate import dev_fold, dev_split, evaluate, load_coco_ground_truth, summarize
from bioscan_rebuild.detect.yolo.backends import SEPARATE_MAX_OVERLAP, OnnxDetector, YoloDetector
from bioscan_rebuild.detect.yolo.dataset import prepare_yolo_dataset
from bioscan_rebuild.detect.yolo.offline import configure_offline, import_ultralytics, versions

DEFAULT_MODEL_YAML = "yolo11n.yaml"


def train_detector(
    data_yaml: str | Path,
    out_dir: str | Path,
    epochs: int = 50,
    imgsz: int = 320,
    model_yaml: str = DEFAULT_MODEL_YAML,
    device: str | None = None,
    seed: int = 0,
    batch: int = 16,
    eval_dev_dir: str | Path | None = None,
    workers: int = 1,
    cache: str | bool = "ram",
    patience: int = 100,
    opset: int = 17,
    config_dir: str | Path | None = None,
    verbose: bool = False,
    extra_args: dict | None = None,
    classes_csv: str | Path | None = None,
    report_extra: dict | None = None,
    fold_dirs: list | None = None,
) -> dict:
    """Train from scratch (offline), export ONNX, optionally score both backends on the dev
    'holdout' half; writes out_dir/{weights.pt, model.onnx, report.json} and returns the report.
    ``fold_dirs``: out-of-fold models of this recipe, for the fusion fit (``fit_and_score_fusion``)."""
    import_ultralytics(config_dir)
    import torch
    from ultralytics import YOLO

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if device is None:
        device = "0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # ultralytics trains on cpu_count - 1 threads: half the machine on two cores
        import ultralytics.utils.torch_utils as torch_utils

        # the cores this process may run on (a cluster job's allocation), not the whole node's
        torch_utils.NUM_THREADS = len(os.sched_getaffinity(0)) or 1
    args = dict(
        data=str(Path(data_yaml).resolve()),
        epochs=int(epochs),
        imgsz=int(imgsz),
        batch=int(batch),
        device=device,
        seed=int(seed),
        deterministic=True,
        workers=int(workers),
        cache=cache,
        plots=False,
        amp=False,
        patience=int(patience),
        flipud=0.5,  # photos are taken from above: no preferred up/down
        project=str(out / "runs"),
        name="train",
        exist_ok=True,
        verbose=verbose,
        pretrained=False,
    )
    args.update(extra_args or {})
    shutil.rmtree(out / "runs" / "train", ignore_errors=True)
    model = YOLO(model_yaml, task="detect")
    t0 = time.perf_counter()
    model.train(**args)
    train_seconds = time.perf_counter() - t0
    trainer = model.trainer
    chosen = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    weights = out / "weights.pt"
    shutil.copyfile(chosen, weights)

    onnx_path = export_onnx(weights, out / "model.onnx", imgsz=imgsz, opset=opset, config_dir=config_dir)
    metrics = {}
    results_csv = Path(trainer.save_dir) / "results.csv"
    if results_csv.is_file():
        lines = results_csv.read_text().strip().splitlines()
        if len(lines) > 1:
            header = [h.strip() for h in lines[0].split(",")]
            metrics = {h: float(v) for h, v in zip(header, lines[-1].split(",")) if v.strip()}
    data_dir = Path(data_yaml).resolve().parent
    manifest = data_dir / "manifest.json"
    report = {
        "model_yaml": model_yaml,
        "train_args": {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()},
        "device_name": torch.cuda.get_device_name(0) if device not in ("cpu", None) else platform.processor() or "cpu",
        "train_seconds": round(train_seconds, 1),
        "weights_from": chosen.name,
        "final_val_metrics": metrics,
        "dataset": json.loads(manifest.read_text()) if manifest.is_file() else None,
        "versions": versions(),
        "weights": {"path": weights.name, "sha256": file_sha256(weights)},
        "onnx": {"path": onnx_path.name, "sha256": file_sha256(onnx_path), "opset": opset, "dynamic": True},
        "separate_max_overlap": SEPARATE_MAX_OVERLAP,
    }
    if eval_dev_dir:
        # the torch weights here; the ONNX model is scored once, with every other backend, in "fusion"
        report["holdout_eval"] = evaluate_holdout(weights, None, eval_dev_dir, imgsz=imgsz, device=device)
        fold_models = read_fold_models(report, fold_dirs) if fold_dirs else None
        report["fusion"] = fit_and_score_fusion(onnx_path, eval_dev_dir, out / "fusion.json", classes_csv, fold_models)
    else:  # nothing to fit on: the rule's defaults, saying so (the fusion backend should not use it)
        from bioscan_rebuild.detect.fusion import FusionRule
        from bioscan_rebuild.detect.heldout import write_rule

        provenance = {"model_sha256": file_sha256(onnx_path), "half": None}
        left_out = (((report.get("dataset") or {}).get("real")) or {}).get("left_out_fold")
        if left_out:  # ship-detector refuses it by name
            provenance["left_out_fold"] = left_out
        write_rule(FusionRule(), {}, out / "fusion.json", provenance)
    report.update(report_extra or {})
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def export_onnx(
    weights: str | Path,
    onnx_path: str | Path,
    imgsz: int = 320,
    opset: int = 17,
    dynamic: bool = True,
    config_dir: str | Path | None = None,
) -> Path:
    """Export weights.pt to ONNX (dynamic batch and size by default, so the ONNX backend can use
    the same minimal-rectangle letterbox as ultralytics' predictor)."""
    import_ultralytics(config_dir)
    from ultralytics import YOLO

    weights = Path(weights).resolve()
    with tempfile.TemporaryDirectory(prefix="yolo-export-") as tmp:
        staged = Path(tmp) / "model.pt"
        shutil.copyfile(weights, staged)
        exported = YOLO(str(staged), task="detect").export(
            format="onnx", imgsz=int(imgsz), dynamic=dynamic, simplify=True, opset=opset, device="cpu", verbose=False
        )
        target = Path(onnx_path).resolve()
        shutil.move(str(exported), target)
    return target


def evaluate_holdout(
    weights: str | Path,
    onnx_path: str | Path | None,
    dev_dir: str | Path | list[str | Path],
    imgsz: int | None = None,
    device: str | None = None,
    subset: str = "holdout",
) -> dict:
    """``detect.evaluate.evaluate`` summaries of the yolo (and onnx) backends on one half of the dev set(s)."""
    detectors = {"yolo": YoloDetector(weights, device=device, imgsz=imgsz)}
    if onnx_path:
        detectors["onnx"] = OnnxDetector(onnx_path, imgsz=imgsz)
    result = evaluate_dev_sets(detectors, dev_dir, subset)
    return {"subset": subset, "images": result.pop("images"), **result}


def fit_and_score_fusion(onnx_path, dev_dirs, rule_path, classes_csv=None, fold_models=None) -> dict:
    """Fit the fusion rule (classical + this model) on the dev sets' train half, write it to ``rule_path``, and
    score every backend on the holdout half (overall and per image class of ``classes_csv``) and the fusion's
    review queue there (``heldout.review_table``).

    ``fold_models``: [(onnx path, fold, folds)], one model per part of the train half, each trained without its
    part (``train-detector --leave-out-fold``). The rule is then fitted on their out-of-fold detections
    (``heldout.out_of_fold``): on photos the learned model has not seen, as every photo it will meet in a run,
    so its choices and confidences do not trust the model for having learned the answers. The holdout half
    is scored with this model as always."""
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.detect.heldout import (
        LEARNED_LOW_BAR,
        fit_fusion,
        fold_key,
        out_of_fold,
        read_classes,
        review_table,
        run_detectors,
        score_table,
        write_rule,
    )

    dev_dirs = [Path(d) for d in (dev_dirs if isinstance(dev_dirs, (list, tuple)) else [dev_dirs])]
    detectors = {
        "classical": ClassicalDetector(),
        "learned": OnnxDetector(onnx_path, conf=LEARNED_LOW_BAR),
        "learned_tta": OnnxDetector(onnx_path, conf=LEARNED_LOW_BAR, tta=True),
    }
    folds = check_fold_models(fold_models) if fold_models else 0
    wanted = {}
    if folds:  # the train half's learned detections come from the fold models: the model scores the holdout only
        wanted["learned"] = wanted["learned_tta"] = _in_holdout
    for path, fold, _ in fold_models or []:
        for name, tta in (("learned", False), ("learned_tta", True)):
            detectors[fold_key(name, fold)] = OnnxDetector(path, conf=LEARNED_LOW_BAR, tta=tta)
            wanted[fold_key(name, fold)] = _in_part(fold, folds)
    rows, seconds = run_detectors(dev_dirs, detectors, read_classes(classes_csv), wanted=wanted)
    photos = {name: sum(row[name] is not None for row in rows) for name in detectors}
    if folds:
        rows = out_of_fold(rows, folds)
    rule, fit = fit_fusion(rows)
    provenance = {
        "model_sha256": file_sha256(onnx_path),
        "dev_sets": [{"folder": d.name, "coco_sha256": file_sha256(d / "coco_annotations.json")} for d in dev_dirs],
        "half": "train",
        # the rule's thresholds are in this detector's score units: the fusion backend checks its version
        "classical": detectors["classical"].params(),
    }
    if folds:  # only then, so that a rule fitted on the model's own detections keeps its file as it was
        provenance["out_of_fold"] = {
            "folds": folds,
            "models": [
                {"fold": fold, "sha256": file_sha256(path)} for path, fold, _ in sorted(fold_models, key=lambda m: m[1])
            ],
        }
    write_rule(rule, fit, rule_path, provenance)
    return {
        "rule": rule.as_dict(),
        "train_fit": fit,
        "out_of_fold": provenance.get("out_of_fold"),
        "holdout": score_table(rows, rule, "holdout"),
        "review_holdout": review_table(rows, rule, "holdout"),
        "ms_per_photo": {name: 1000 * s / max(1, photos[name]) for name, s in seconds.items() if "@" not in name},
    }


def _in_holdout(processid: str) -> bool:
    return dev_split(processid) == "holdout"


def _in_part(fold: int, folds: int):
    def accepts(processid: str) -> bool:
        return dev_split(processid) == "train" and dev_fold(processid, folds) == fold

    return accepts


def check_fold_models(fold_models) -> int:
    """The number of parts, after checking that ``fold_models`` [(path, fold, folds)] hold one model per part."""
    counts = {int(folds) for _, _, folds in fold_models}
    if len(counts) != 1:
        raise ValueError(f"the out-of-fold models split the train half differently: {sorted(counts)} parts")
    folds = counts.pop()
    parts = sorted(int(fold) for _, fold, _ in fold_models)
    if folds < 2 or parts != list(range(folds)):
        raise ValueError(f"out-of-fold models need one model per part 0..{folds - 1}, got parts {parts}")
    return folds


def evaluate_dev_sets(detectors: dict, dev_dirs, subset: str) -> dict:
    """Each detector's summary over one half of one or more COCO dev sets (each folder holds its photos)."""
    dev_dirs = [Path(d) for d in (dev_dirs if isinstance(dev_dirs, (list, tuple)) else [dev_dirs])]
    sets = [
        (d, [t for t in load_coco_ground_truth(d / "coco_annotations.json") if dev_split(t.processid) == subset])
        for d in dev_dirs
    ]
    result = {"images": sum(len(truths) for _, truths in sets)}
    for name, detector in detectors.items():
        runs = [evaluate(detector, truths, d) for d, truths in sets]
        rows = [row for run in runs for row in run["rows"]]
        ms = sum(run["summary"]["ms_per_image"] * len(run["rows"]) for run in runs) / max(1, len(rows))
        result[name] = summarize(rows, ms)
    return result


def training_command(
    target: str,
    dev_dirs: list,
    *,
    classes_csv,
    generated: int,
    epochs: int,
    imgsz: int,
    batch: int,
    seed: int,
    real_repeat: int,
    model: str | None,
    leave_out_fold: tuple[int, int] | None,
    fold_options: list[str],
    real: bool,
    include_holdout: bool,
    score: bool,
) -> str:
    """The ``train-detector`` command the card gives: every option the run took, so that it makes the model again
    (without ``--no-real``, ``--no-eval`` or ``--include-holdout`` it asked for the dev sets, or scored and fitted
    what the run did not)."""
    return " ".join(
        [
            f"bioscan-rebuild train-detector --out {target}",
            *(f"--dev-dir {d}" for d in dev_dirs),
            *([f"--classes {classes_csv}"] if classes_csv else []),
            *(["--no-real"] if not real else []),
            *(["--include-holdout"] if include_holdout else []),
            *(["--no-eval"] if not score else []),
            f"--generated {generated} --epochs {epochs} --imgsz {imgsz} --batch {batch} --seed {seed}",
            f"--real-repeat {real_repeat}" + (f" --model {model}" if model else ""),
            *([f"--leave-out-fold {leave_out_fold[0]}/{leave_out_fold[1]}"] if leave_out_fold else []),
            *fold_options,
        ]
    )


def prepare_and_train(
    out: Path,
    dev_dirs: Path | list[Path] | None,
    *,
    draw_photo,
    real: bool = True,
    prepare_only: bool = False,
    generated: int = 400,
    seed: int = 0,
    include_holdout: bool = False,
    real_repeat: int = 2,
    epochs: int = 50,
    imgsz: int = 320,
    batch: int = 16,
    model: str | None = None,
    device: str | None = None,
    workers: int = 1,
    score: bool = True,
    verbose: bool = False,
    classes_csv: str | Path | None = None,
    how_run: str | None = None,
    leave_out_fold: tuple[int, int] | None = None,
    fold_dirs: list | None = None,
) -> dict:
    """`bioscan-rebuild train-detector`: the dataset (the train half of the real dev sets ``dev_dirs`` unless
    ``real`` is False, plus ``generated`` photos from ``draw_photo``), then training, the ONNX export and the
    score on the dev set's holdout half. With ``prepare_only`` the dataset goes to ``out`` itself and its
    manifest is returned. ``how_run``: a line for the card's command block, where the model was not made by the
    config's ``snakemake train_detector`` (e.g. on a GPU by ``bench/gpu_train.py``). ``leave_out_fold`` (i, k):
    an out-of-fold model (``dataset.prepare_yolo_dataset``; not scored). ``fold_dirs``: such models, one per part,
    trained the same way: the fusion rule is fitted on their detections (``fit_and_score_fusion``)."""
    configure_offline()
    if leave_out_fold and not real:
        raise ValueError("an out-of-fold model leaves out real photos: it needs the real dev sets (not --no-real)")
    fold_models = []
    if fold_dirs:  # before hours of training, all that can be checked without the model
        if leave_out_fold:
            raise ValueError("an out-of-fold model (--leave-out-fold) takes no out-of-fold models itself")
        if not score or include_holdout or not real:
            raise ValueError(
                "out-of-fold models serve the fusion fit on the train half: not with --no-eval, "
                "--include-holdout or --no-real"
            )
        planned = {
            "model_yaml": model or DEFAULT_MODEL_YAML,
            "train_args.epochs": int(epochs),
            "train_args.imgsz": int(imgsz),
            "train_args.batch": int(batch),
            "train_args.seed": int(seed),
            "dataset.seed": int(seed),
            "dataset.n_generated": int(generated),
            "real.real_repeat": int(real_repeat),
        }
        fold_models = read_fold_models(None, fold_dirs)
        for path, _, _ in fold_models:
            theirs = _recipe(json.loads((path.parent / "report.json").read_text()))
            differs = {k: (theirs[k], v) for k, v in planned.items() if theirs[k] != v}
            if differs:
                raise ValueError(f"{path.parent} was trained differently from this model (its, this one's): {differs}")
    if isinstance(dev_dirs, (str, Path)):
        dev_dirs = [dev_dirs]
    dev_dirs = [Path(d) for d in dev_dirs or []]
    cocos = [d / "coco_annotations.json" for d in dev_dirs]
    dataset_dir = out if prepare_only else out / "dataset"
    data_yaml = prepare_yolo_dataset(
        dataset_dir,
        coco_path=cocos if real else None,
        n_generated=generated,
        seed=seed,
        include_holdout=include_holdout,
        real=real,
        real_repeat=real_repeat,
        draw_photo=draw_photo,
        leave_out_fold=leave_out_fold,
    )
    if prepare_only:
        return json.loads((dataset_dir / "manifest.json").read_text())
    # the holdout half can be scored only when it exists and was not trained on
    # (an out-of-fold model is not scored: it stands in for the full model on its left-out part only)
    scored = score and not include_holdout and not leave_out_fold and bool(cocos) and all(c.is_file() for c in cocos)
    from bioscan_rebuild.detect.model_card import model_card
    from bioscan_rebuild.detect.shipped import MODEL

    target = f"results/detector-fold{leave_out_fold[0]}of{leave_out_fold[1]}" if leave_out_fold else "results/detector"
    command = training_command(
        target,
        dev_dirs,
        classes_csv=classes_csv,
        generated=generated,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        seed=seed,
        real_repeat=real_repeat,
        model=model,
        leave_out_fold=leave_out_fold,
        fold_options=fold_options(fold_models),
        real=real,
        include_holdout=include_holdout,
        score=score,
    )
    workflow = (
        f"snakemake {target}/report.json --cores 2 (train_detector.out_of_fold: {leave_out_fold[1]})"
        if leave_out_fold
        else "snakemake train_detector --cores 2"
    )
    command += "\n# " + (how_run or f"the same, from the config's train_detector section: {workflow}")
    report = train_detector(
        data_yaml,
        out,
        epochs=epochs,
        imgsz=imgsz,
        model_yaml=model or DEFAULT_MODEL_YAML,
        device=device,
        seed=seed,
        batch=batch,
        eval_dev_dir=dev_dirs if scored else None,
        classes_csv=classes_csv,
        workers=workers,
        verbose=verbose,
        # the command for the card, also when `refit-fusion` rewrites it; the classes, refit-fusion's default
        report_extra={"command": command, "classes": str(classes_csv) if classes_csv else None},
        fold_dirs=fold_dirs if scored else None,
    )
    (out / "MODEL_CARD.md").write_text(model_card(report, MODEL, command))
    summary = {k: report[k] for k in ("weights", "onnx", "train_seconds", "final_val_metrics")}
    summary["holdout_eval"] = report.get("holdout_eval")
    summary["fusion"] = report.get("fusion")
    return summary


# What an out-of-fold model must share with the model it stands in for (report keys), so that its detections
# on its left-out part are what that model would give a photo it has not seen.
FOLD_RECIPE = {
    "train_args": ("epochs", "imgsz", "batch", "seed", "deterministic", "flipud", "pretrained"),
    "dataset": ("seed", "n_generated", "jpeg_quality"),
    "real": ("coco_sha256", "real_repeat", "include_holdout", "copy_k_turned_k_quarter_turns"),
}


def _recipe(report: dict) -> dict:
    dataset = report.get("dataset") or {}
    recipe = {"model_yaml": report.get("model_yaml")}
    for key in FOLD_RECIPE["train_args"]:
        recipe[f"train_args.{key}"] = (report.get("train_args") or {}).get(key)
    for key in FOLD_RECIPE["dataset"]:
        recipe[f"dataset.{key}"] = dataset.get(key)
    for key in FOLD_RECIPE["real"]:
        recipe[f"real.{key}"] = (dataset.get("real") or {}).get(key)
    return recipe


def read_fold_models(main_report: dict | None, fold_dirs) -> list[tuple[Path, int, int]]:
    """[(model.onnx, fold, folds)] of `train-detector --leave-out-fold` folders, sorted by part, after checking
    each one's model against its report and its recipe against the main model's (``FOLD_RECIPE``; without
    ``main_report``, before the model is trained: against the first fold model's), and that they cover every part
    once (``check_fold_models``)."""
    models, first = [], None
    for directory in [Path(d) for d in fold_dirs]:
        report_path, onnx = directory / "report.json", directory / "model.onnx"
        if not (report_path.is_file() and onnx.is_file()):
            raise FileNotFoundError(f"{directory}: no model.onnx and report.json (train it with --leave-out-fold)")
        report = json.loads(report_path.read_text())
        first = first or report
        if (report.get("onnx") or {}).get("sha256") != file_sha256(onnx):
            raise ValueError(f"{onnx} is not the model {report_path} describes")
        left_out = ((report.get("dataset") or {}).get("real") or {}).get("left_out_fold")
        if not left_out:
            raise ValueError(f"{directory}: not trained with --leave-out-fold, so it has no photos it never saw")
        against = "the model" if main_report is not None else "the first out-of-fold model"
        wanted = _recipe(main_report if main_report is not None else first)
        differs = {k: (v, wanted[k]) for k, v in _recipe(report).items() if v != wanted[k]}
        if differs:
            raise ValueError(f"{directory} was trained differently from {against} (this one's, its): {differs}")
        models.append((onnx, int(left_out["fold"]), int(left_out["folds"])))
    check_fold_models(models)
    return sorted(models, key=lambda model: model[1])


def fold_options(fold_models) -> list[str]:
    """The command-line options naming out-of-fold models, as the workflow lays them out (``results/``)."""
    return [f"--out-of-fold results/detector-fold{fold}of{folds}" for _, fold, folds in fold_models]


def refit_fusion(
    trained_dir: str | Path,
    dev_dirs=None,
    classes_csv: str | Path | None = None,
    fold_dirs=None,
    from_shipped: bool = False,
) -> dict:
    """`bioscan-rebuild refit-fusion` (see ``_refit``). ``from_shipped``: first copy the package's model, rule,
    card and training report into ``trained_dir`` (``shipped.unpack``: a new or empty folder), so that the
    shipped model's rule can be fitted again and shipped back without its training's folder. If the fit fails,
    the folder is left as it was (what was copied or written is removed)."""
    if not from_shipped:
        return _refit(trained_dir, dev_dirs, classes_csv, fold_dirs)
    import shutil

    from bioscan_rebuild.detect.shipped import unpack

    out = Path(trained_dir)
    created = not out.exists()
    unpack(out)  # refuses a folder that holds anything
    try:
        return _refit(out, dev_dirs, classes_csv, fold_dirs, from_shipped=True)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:  # it was empty: everything in it now is ours
            for path in out.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        raise


def _refit(trained_dir, dev_dirs, classes_csv, fold_dirs, from_shipped: bool = False) -> dict:
    """`bioscan-rebuild refit-fusion`: fit a `train-detector` folder's fusion rule again for the same model
    (after the classical detector or the rule family changed), on the dev sets' train half (by default those it
    was trained with, and their image classes); rewrites ``fusion.json``, the report's ``fusion`` scores and
    ``MODEL_CARD.md`` (all three or none). No training, no torch. Refuses a model trained on the holdout half (its
    "held-out" scores would not be), or without part of the train half (an out-of-fold model). ``fold_dirs``: the
    out-of-fold models' folders (``read_fold_models``): the rule is then fitted on their detections of the photos
    each one left out (``fit_and_score_fusion``)."""
    from bioscan_rebuild.detect.model_card import CARD_FIELDS, CARD_TRAIN_ARGS, model_card
    from bioscan_rebuild.detect.shipped import MODEL

    out = Path(trained_dir)
    missing = [name for name in ("model.onnx", "report.json") if not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: no {', '.join(missing)} (run `bioscan-rebuild train-detector`)")
    report = json.loads((out / "report.json").read_text())
    lacking = [key for key in CARD_FIELDS if key not in report]
    lacking += [f"train_args.{key}" for key in CARD_TRAIN_ARGS if key not in report.get("train_args", {})]
    lacking += [f"{key}.sha256" for key in ("weights", "onnx") if "sha256" not in (report.get(key) or {})]
    if lacking:  # checked before the fit: the card is written from them after it
        raise ValueError(f"{out / 'report.json'} is not a train-detector report (no {', '.join(lacking)})")
    if report["onnx"]["sha256"] != file_sha256(out / "model.onnx"):
        raise ValueError(f"{out / 'model.onnx'} is not the model {out / 'report.json'} describes")
    if ((report.get("dataset") or {}).get("real") or {}).get("include_holdout"):
        raise ValueError(f"{out}: the model was trained on the holdout half too, so nothing is left to score it on")
    if ((report.get("dataset") or {}).get("real") or {}).get("left_out_fold"):
        raise ValueError(f"{out}: the model left out part of the train half: it is for out-of-fold detections only")
    if not report.get("command"):  # a folder from before the report kept it: the card's command block
        card = out / "MODEL_CARD.md"
        text = card.read_text() if card.is_file() else ""
        if "```sh\n" not in text:
            raise ValueError(f"{out}: neither report.json nor MODEL_CARD.md says how the model was made")
        report["command"] = text.split("```sh\n", 1)[1].split("\n```", 1)[0]
    if not dev_dirs:  # the training's own dev sets (their COCO files, as train-detector was given them)
        dev_dirs = [Path(c).parent for c in ((report.get("dataset") or {}).get("real") or {}).get("coco", [])]
        classes_csv = classes_csv or report.get("classes")
        if not dev_dirs:
            raise ValueError(f"{out / 'report.json'} names no real dev sets: give them (--dev-dir)")
    dev_dirs = [Path(d) for d in (dev_dirs if isinstance(dev_dirs, (list, tuple)) else [dev_dirs])]
    absent = [str(d) for d in dev_dirs if not (d / "coco_annotations.json").is_file()]
    if absent:
        raise FileNotFoundError(f"no coco_annotations.json in {', '.join(absent)} (give the dev sets: --dev-dir)")
    new_rule = out / "fusion.json.refit"
    if not fold_dirs and (out / "fusion.json").is_file():
        previous = (json.loads((out / "fusion.json").read_text()).get("fitted_on") or {}).get("out_of_fold")
        if previous:
            raise ValueError(
                f"{out / 'fusion.json'} was fitted on {previous['folds']} out-of-fold models: give them again "
                "(--out-of-fold DIR, one per part), or delete it to fit on the model's own detections"
            )
    fold_models = read_fold_models(report, fold_dirs) if fold_dirs else None
    report["fusion"] = fit_and_score_fusion(out / "model.onnx", dev_dirs, new_rule, classes_csv, fold_models)
    report["fusion_refit"] = " ".join(
        [
            # the folder a maintainer would name (README); a shipped model's refit needs a new one
            "bioscan-rebuild refit-fusion results/detector-shipped --from-shipped"
            if from_shipped
            else "bioscan-rebuild refit-fusion results/detector",
            *(f"--dev-dir {d}" for d in dev_dirs),
            *([f"--classes {classes_csv}"] if classes_csv else []),
            *fold_options(fold_models or []),
        ]
    )
    card = model_card(report, MODEL, report["command"])
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(card)
    new_rule.replace(out / "fusion.json")
    fusion = report["fusion"]
    holdout = fusion["holdout"]["fusion"]["all"]
    return {"rule": fusion["rule"], "train_fit": fusion["train_fit"], "holdout_fusion": holdout}
