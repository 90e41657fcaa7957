"""The detector model that ships with the package (``detect/models/``: the ONNX export, its fusion rule, its
model card and its training report), so the ``onnx`` and ``fusion`` backends run out of the box in the light
install, and its rule can be fitted again (``unpack``, then ``refit-fusion``) without the training's folder."""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

from bioscan_rebuild.core.io import read_json
from bioscan_rebuild.detect.classical import ClassicalDetector

MODEL = "specimen-yolo11n.onnx"
FUSION_RULE = "fusion.json"
MODEL_CARD = "MODEL_CARD.md"
TRAINING_REPORT = "training-report.json"
# what `train-detector` writes -> its name in the package
TRAINED_FILES = {
    "model.onnx": MODEL,
    "fusion.json": FUSION_RULE,
    "MODEL_CARD.md": MODEL_CARD,
    "report.json": TRAINING_REPORT,
}


def shipped(name: str) -> Path:
    """A file of the shipped model (package data)."""
    return Path(str(resources.files("bioscan_rebuild.detect") / "models" / name))


def rule_model_problem(fitted: dict, model_sha: str) -> str | None:
    """Why a fusion rule (its ``fitted_on``) must not run with the model of sha256 ``model_sha``; None when it
    may: it was fitted on that model's detections of the train half. An out-of-fold model's rule, a placeholder
    (``train-detector --no-eval``: fitted on nothing) and another model's rule all refuse."""
    if fitted.get("left_out_fold"):
        return "an out-of-fold model's rule (trained without part of the train half): not for use"
    if fitted.get("half") != "train":
        return f"not fitted on a training half (fitted_on {fitted}); train with the real dev sets and without --no-eval"
    if fitted.get("model_sha256") != model_sha:
        return (
            f"fitted on the model of sha256 {fitted.get('model_sha256')}, not on this one ({model_sha}): give the "
            "rule train-detector wrote beside these weights (images.detector.params.rule), or fit one: "
            "bioscan-rebuild refit-fusion"
        )
    return None


def ship(trained_dir: str | Path, models_dir: str | Path | None = None) -> dict[str, str]:
    """Copy a `train-detector` output folder's model, fusion rule, card and report into ``models_dir`` (the
    package's ``detect/models/`` by default: run from a source checkout). Refuses a rule fitted on another model
    or on nothing, or with another classical detector than the package's, and a report of another model or
    rule, so the shipped four always belong together. Returns {shipped name: sha256}."""
    trained_dir = Path(trained_dir)
    missing = [name for name in TRAINED_FILES if not (trained_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{trained_dir}: no {', '.join(missing)} (run `bioscan-rebuild train-detector`)")
    model_sha = hashlib.sha256((trained_dir / "model.onnx").read_bytes()).hexdigest()
    fitted = read_json(trained_dir / "fusion.json", "a fusion rule").get("fitted_on") or {}
    problem = rule_model_problem(fitted, model_sha)
    if problem:
        raise ValueError(f"{trained_dir / 'fusion.json'}: {problem}")
    if model_sha not in (trained_dir / "MODEL_CARD.md").read_text():
        raise ValueError(f"{trained_dir / 'MODEL_CARD.md'} does not describe this model (sha256 {model_sha})")
    report = read_json(trained_dir / "report.json", "a training report")
    if (report.get("onnx") or {}).get("sha256") != model_sha:
        raise ValueError(f"{trained_dir / 'report.json'} does not describe this model (sha256 {model_sha})")
    if (report.get("fusion") or {}).get("rule") != read_json(trained_dir / "fusion.json", "a fusion rule").get("rule"):
        raise ValueError(f"{trained_dir / 'report.json'} does not hold the fit of {trained_dir / 'fusion.json'}")
    # the shipped rule runs with the default classical detector: it must have been fitted with exactly that one
    if fitted.get("classical") != ClassicalDetector().params():
        raise ValueError(
            f"{trained_dir / 'fusion.json'} was fitted with another classical detector than this package's "
            f"(fitted with {fitted.get('classical')}); fit it again: bioscan-rebuild refit-fusion {trained_dir} "
            "(with its --out-of-fold folders, if it was fitted on out-of-fold models)"
        )
    target = Path(models_dir) if models_dir else shipped(MODEL).parent
    target.mkdir(parents=True, exist_ok=True)
    written = {}
    for source, name in TRAINED_FILES.items():
        shutil.copyfile(trained_dir / source, target / name)
        written[name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    return written


def unpack(target_dir: str | Path, models_dir: str | Path | None = None) -> Path:
    """The shipped model as a `train-detector` folder in ``target_dir`` (model.onnx, fusion.json, MODEL_CARD.md,
    report.json), e.g. to fit its rule again after the classical detector changed (``refit-fusion``) and ship it
    back, without retraining. ``target_dir`` must be new or empty (a training's folder is never overwritten)."""
    source = Path(models_dir) if models_dir else shipped(MODEL).parent
    missing = [name for name in TRAINED_FILES.values() if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: no {', '.join(missing)} (the package ships no complete model)")
    target = Path(target_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} is not a new or empty folder: give one for the shipped model")
    target.mkdir(parents=True, exist_ok=True)
    for name, packaged in TRAINED_FILES.items():
        shutil.copyfile(source / packaged, target / name)
    return target
