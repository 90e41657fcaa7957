# Detector: train the YOLO model offline (explicit target: `snakemake train_detector`).


rule train_detector:
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
    resources:
        gpu=config["train_detector"]["gpus"],
    params:
        cli=CLI,
        outdir=subpath(output.report, parent=True),
        dev=(
            " ".join(
                f"--dev-dir {shlex.quote(d)}"
                for d in config["train_detector"]["dev_dirs"]
            )
            or "--no-real"
        ),
        classes=(
            f"--classes {shlex.quote(config['train_detector']['classes'])}"
            if config["train_detector"]["classes"]
            else ""
        ),
        generated=config["train_detector"]["generated"],
        epochs=config["train_detector"]["epochs"],
        imgsz=config["train_detector"]["imgsz"],
        batch=config["train_detector"]["batch"],
    shell:
        "{params.cli} train-detector --out {params.outdir:q} {params.dev} {params.classes} "
        "--generated {params.generated} --epochs {params.epochs} --imgsz {params.imgsz} "
        "--batch {params.batch} > {log} 2>&1"
