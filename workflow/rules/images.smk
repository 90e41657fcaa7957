# Images: detection, BIOSCAN-5M crops, the four image packages and size fields, per shard.


rule process_images:
    input:
        records="results/ingest/shards/{shard}/records.parquet",
        weights=detector_weights,
    output:
        images="results/images/{shard}/images.parquet",
        bbox="results/images/{shard}/bbox.tsv",
        summary="results/images/{shard}/summary.json",
        sheet=report(
            "results/images/{shard}/contact_sheet.jpg",
            caption="../report/contact_sheet.rst",
            category="Images",
            subcategory="Contact sheets",
            labels={"shard": "{shard}"},
        ),
    log:
        "logs/images/process_images/{shard}.log",
    benchmark:
        "benchmarks/images/process_images/{shard}.tsv"
    conda:
        "../../envs/images.yaml"
    resources:
        gpu=DETECTOR_GPUS,
    params:
        cli=CLI,
        store=STORE,
        outdir=subpath(output.summary, parent=True),
        backend=DETECTOR["backend"],
        weights=weights_option,
        detector_params=DETECTOR_PARAMS_JSON,
        batch_params=BATCH_DETECTOR_PARAMS_JSON,
        image_params=IMAGE_PARAMS_JSON,
        image_dirs=all_image_dir_args,
        sheet_size=config["images"]["contact_sheet_size"],
        code_version=IMAGE_CODE_VERSION,
    shell:
        "{params.cli} images shard {input.records:q} --store {params.store:q} "
        "--outdir {params.outdir:q} --backend {params.backend} {params.weights} "
        "--detector-params {params.detector_params:q} --batch-params {params.batch_params:q} "
        "--image-params {params.image_params:q} {params.image_dirs} "
        "--contact-sheet-size {params.sheet_size} > {log} 2>&1"


rule images_summary:
    input:
        expand("results/images/{shard}/summary.json", shard=SHARDS),
    output:
        report(
            "results/images/summary.json",
            caption="../report/images_summary.rst",
            category="Images",
        ),
    log:
        "logs/images/summary.log",
    benchmark:
        "benchmarks/images/summary.tsv"
    conda:
        "../../envs/images.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} images summary {input:q} -o {output:q} > {log} 2>&1"
