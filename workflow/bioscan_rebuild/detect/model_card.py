"""The model card of a trained detector, written from ``train-detector``'s report (``report.json``), so the card
that ships beside the model says exactly what that run did and measured."""

from __future__ import annotations

METRICS = (("mean_iou", "{:.3f}"), ("iou_ge_0.5", "{:.1%}"), ("iou_ge_0.75", "{:.1%}"), ("empty_recognised", "{:.1%}"))
BACKEND_ORDER = ("classical", "onnx", "onnx_tta", "fusion", "oracle")
# what model_card reads from a train-detector report (refit-fusion checks them before its fit)
CARD_FIELDS = ("model_yaml", "train_args", "device_name", "train_seconds", "weights_from", "weights", "onnx")
CARD_TRAIN_ARGS = ("imgsz", "epochs", "batch", "seed", "device")


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = summary.get(key)
    return "–" if value is None else fmt.format(value)


def holdout_table(holdout: dict) -> list[str]:
    """Markdown rows: every backend on the holdout half, overall then per image class."""
    lines = [
        "| backend | photos | specimens | empty wells | mean IoU | IoU ≥ 0.5 | IoU ≥ 0.75 | empty wells recognised |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = sorted({g for per in holdout.values() for g in per}, key=lambda g: (g != "all", g))
    for group in groups:
        for backend in [b for b in BACKEND_ORDER if b in holdout]:
            summary = holdout[backend].get(group)
            if summary is None:
                continue
            cells = " | ".join(_cell(summary, key, fmt) for key, fmt in METRICS)
            lines.append(
                f"| {backend} | {group} ({summary['images']}) | {summary['specimens']} | {summary['empty_wells']} "
                f"| {cells} |"
            )
    return lines


def out_of_fold_lines(out_of_fold: dict | None) -> list[str]:
    """How the rule's learned detections were made, when out of fold (``fit_and_score_fusion``)."""
    if not out_of_fold:
        return []
    models = ", ".join(f"part {m['fold']} `{m['sha256'][:12]}`" for m in out_of_fold["models"])
    return [
        f"It was fitted on out-of-fold detections: {out_of_fold['folds']} models, each trained the same way without "
        f"one part of the train half (the training command above with `--leave-out-fold I/{out_of_fold['folds']}`), "
        f"detected the photos of their part ({models}; sha256 prefixes), so the rule's choices and confidences come "
        "from photos the learned model had not seen, as in a run.",
    ]


def confidence_lines(model: dict | None) -> list[str]:
    """How the rule's confidence per photo was fitted (nothing for a rule whose confidences are per situation)."""
    if not model:
        return []
    return [
        "A photo's confidence is the chance that its answer is right by a logistic regression of the mistakes of "
        f"the {model.get('photos', '?')} train-half photos ({model.get('wrong', '?')} wrong) on "
        f"{', '.join(model['features'])} (standardised; L2 penalty {model.get('l2', '?')}, the lowest log-loss in "
        "cross-validation within the train half).",
    ]


def review_lines(review: dict | None) -> list[str]:
    """The fusion's review queue on the held-out half: how much it flags and how many of its mistakes."""
    if not review or not review.get("photos"):
        return []
    reasons = ", ".join(f"{name} {v['flagged']} ({v['wrong']} wrong)" for name, v in review["per_reason"].items())
    held = (
        f"holding {review['wrong_flagged']} of its {review['wrong']} wrong answers "
        f"({review['wrong_flagged'] / review['wrong']:.1%})"
        if review["wrong"]
        else "and it gave no wrong answer there"
    )
    lines = [
        f"Review queue (fusion, held-out half): {review['flagged']} of {review['photos']} photos flagged "
        f"({review['flagged'] / review['photos']:.1%}), {held}; per reason: {reasons}.",
    ]
    least = review.get("least_confident")  # reports from before it was measured have none
    if least and review["wrong"]:
        shares = ", ".join(
            f"the least confident {float(share):.0%} of the photos hold {wrong:g}" for share, wrong in least.items()
        )
        auc = review.get("confidence_auc")  # None when every photo was wrong: no pair to rank
        pairs = (
            f" (a wrong answer is the less confident one of a wrong-right pair with a chance of {auc:.2f}; "
            "0.5 is chance)"
            if auc is not None
            else ""
        )
        lines.append(f"Ranked by the confidence: {shares} of the {review['wrong']} wrong answers{pairs}.")
    after = review.get("after_review") or {}
    if after.get("specimens") is not None and after.get("empty_wells") is not None:
        lines.append(
            f"Once a person corrects the flagged photos: {after['specimens']:.1%} of the specimens boxed, "
            f"{after['empty_wells']:.1%} of the empty wells recognised."
        )
    return [*lines, ""]


def scores_lines(fusion: dict, real: dict) -> list[str]:
    """The card's scores: the held-out half's table, the fusion's confidence and review queue, the speed; for a
    model trained on both halves, that there is nothing to score it on."""
    if real.get("include_holdout"):
        return ["## Scores", "", "None: the model was trained on both halves, so no photo is left to score it on.", ""]
    if not fusion:
        why = (
            "an out-of-fold model is not scored: it stands in for the full model on the part it left out "
            "(`refit-fusion --out-of-fold`)"
            if real.get("left_out_fold")
            else "the held-out half was not scored (`--no-eval`, or no real dev sets); score the model and fit the "
            "rule with `bioscan-rebuild refit-fusion` and the dev sets"
        )
        return ["## Scores", "", f"None: {why}. `fusion.json` holds the rule's defaults, fitted on nothing.", ""]
    return [
        "## Scores on the held-out half",
        "",
        "IoU with the hand-drawn box (a missed specimen counts 0); empty wells recognised = reported `no_object`.",
        "`onnx_tta` is the same model with test-time augmentation (the photo and its three mirror images, boxes",
        "merged). `oracle` is, per photo, the best of the boxes the fusion chooses among (the classical box, the",
        "learned one at the fusion's low bar, their mean, the fusion's own answer; an empty well: no box where any",
        "of them gives none): a ceiling of the fusion's choice, not a backend.",
        "",
        f"The fusion rule (`fusion.json`, fitted on the train half only) runs the model "
        f"{'with' if (fusion.get('rule') or {}).get('learned_tta') else 'without'} test-time augmentation.",
        *confidence_lines((fusion.get("rule") or {}).get("confidence_model")),
        *out_of_fold_lines(fusion.get("out_of_fold")),
        "",
        *holdout_table(fusion.get("holdout", {})),
        "",
        *review_lines(fusion.get("review_holdout")),
        "Detection time per photo on the CPU (one process, decoding excluded): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted((fusion.get("ms_per_photo") or {}).items()))
        + ".",
        "",
    ]


def model_card(report: dict, model_name: str, command: str) -> str:
    """Markdown: what the model is, its data, the command and seed that made it, its held-out scores, its
    hashes and its licence."""
    dataset = report.get("dataset") or {}
    counts = dataset.get("counts", {})
    real = dataset.get("real") or {}
    fusion = report.get("fusion") or {}
    args = report["train_args"]
    versions = report.get("versions", {})
    if real.get("include_holdout"):
        halves_trained = "both halves, `train` and `holdout`,"
        holdout_sentence = "**Nothing was held out**: no score below is from photos the model has not seen."
    else:
        halves_trained = "the `train` half"
        holdout_sentence = "The `holdout` half was never trained or tuned on."
    if real.get("left_out_fold"):
        fold = real["left_out_fold"]
        holdout_sentence += f" Part {fold['fold']} of {fold['folds']} of the train half was left out (out-of-fold)."
    lines = [
        f"# Model card: `{model_name}`",
        "",
        "A one-class (`specimen`) YOLO detector for BIOSCAN plate-well photos, trained from scratch (no pretrained",
        f"weights) with ultralytics `{report['model_yaml']}` at {args['imgsz']} px, exported to ONNX (opset "
        f"{report['onnx']['opset']}, dynamic batch and size). It runs on onnxruntime on the CPU without torch: the",
        "`onnx` backend alone, or the `fusion` backend with the classical detector and the rule in `fusion.json`.",
        "",
        "## Files",
        "",
        f"- `{model_name}`: sha256 `{report['onnx']['sha256']}`",
        f"- weights it was exported from (not shipped): sha256 `{report['weights']['sha256']}`",
        "- `fusion.json`: the fusion rule, fitted on the training half only; it names this model's sha256."
        if fusion
        else "- `fusion.json`: the rule's defaults, fitted on nothing (the fusion backend refuses it); it names this "
        "model's sha256.",
        "",
        "## Training data",
        "",
        f"- Real: {halves_trained} (by `detect.evaluate.dev_split`, md5 of the processid) of the hand-boxed hard cases",
        f"  `{'`, `'.join(str(c) for c in real.get('coco', []))}`: {counts.get('train_real', 0)} specimens and "
        f"{counts.get('train_real_empty', 0)} empty wells trained on (each {real.get('real_repeat', 1)}×, copy k "
        "turned k quarter turns; with the trainer's flips every orientation), "
        f"{counts.get('val_real', 0) + counts.get('val_real_empty', 0)} for validation. {holdout_sentence}",
        f"- Generated: {dataset.get('n_generated', 0)} synthetic well photos with exact boxes (seed "
        f"{dataset.get('seed', 0)}; {counts.get('train_gen', 0) + counts.get('val_gen', 0)} with a specimen, "
        f"{counts.get('train_gen_empty', 0) + counts.get('val_gen_empty', 0)} empty).",
        "",
        "## How it was made",
        "",
        "```sh",
        command,
        "```",
        "",
        *(
            ["The fusion rule was fitted again afterwards, for the same model:", "", "```sh", refit, "```", ""]
            if (refit := report.get("fusion_refit"))
            else []
        ),
        f"Seed {args['seed']}, {args['epochs']} epochs, batch {args['batch']}, deterministic, device "
        f"`{args['device']}` ({report['device_name']}), {report['train_seconds']:.0f} s; weights from "
        f"`{report['weights_from']}`. Versions: "
        + ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
        + ".",
        "",
        *scores_lines(fusion, real),
        "## Licence",
        "",
        "The real training photos are BIOSCAN images (CBG Photography Group) distributed with",
        "3dlg-hcvc/Bioscan-ImgFilter under CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike). These",
        "weights are derived from them: use and share them under the same terms, with that attribution.",
        "The ONNX file's own metadata, written by the ultralytics exporter, names ultralytics' licence",
        "(AGPL-3.0), the code that trained and exported the model; the terms above are the training data's.",
        "",
    ]
    return "\n".join(lines)
