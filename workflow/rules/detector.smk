# Detector: train the YOLO model offline (explicit target: `snakemake train_detector`).
# With train_detector.out_of_fold = K, K more models of the same recipe are trained first, each without one part
# of the train half, and the fusion rule is fitted on their detections of the photos each left out.

rule train_detector_fold:
    input:
        data=train_detector_inputs(),
    output:
        onnx="results/detector-fold{fold}of{folds}/model.onnx",
        report="results/detector-fold{fold}of{folds}/report.json",
    log:
        "logs/detector/train_detector_fold{fold}of{folds}.log",
    benchmark:
        "benchmarks/detector/train_detector_fold{fold}of{folds}.tsv"
    wildcard_constraints:
        fold=r"\d+",
        folds=r"\d+",
    conda:
        "../../envs/yolo.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=TRAIN["gpus"],
        runtime=train_runtime,
    params:
        cli=CLI,
        outdir=subpath(output.report, parent=True),
        options=train_detector_options(),
    shell:
        "{params.cli} train-detector --out {params.outdir:q} {params.options} "
        "--leave-out-fold {wildcards.fold}/{wildcards.folds} > {log} 2>&1"


rule train_detector:
    input:
        data=train_detector_inputs(),
        folds=[f"{d}/report.json" for d in fold_dirs()],
    output:
        weights="results/detector/weights.pt",
        onnx="results/detector/model.onnx",
        fusion="results/detector/fusion.json",
        card="results/detector/MODEL_CARD.md",
        report=report(
            "results/detector/report.json",
            caption="../report/detector.rst",
            category="Detector",
        ),
    log:
        "logs/detector/train_detector.log",
    benchmark:
        "benchmarks/detector/train_detector.tsv"
    conda:
        "../../envs/yolo.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=TRAIN["gpus"],
        runtime=train_runtime,
    params:
        cli=CLI,
        outdir=subpath(output.report, parent=True),
        options=train_detector_options(),
        folds=" ".join(f"--out-of-fold {shlex.quote(d)}" for d in fold_dirs()),
    shell:
        "{params.cli} train-detector --out {params.outdir:q} {params.options} {params.folds} > {log} 2>&1"
