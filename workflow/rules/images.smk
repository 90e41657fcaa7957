# Images: detection, BIOSCAN-5M crops, the four image packages and size fields: the photos per image
# batch and group of shards (photo_job_shards; a new delivery adds jobs, never re-runs old ones), then a
# cheap join per record shard.


rule process_photos:
    input:
        inventory="results/ingest/images/{batch}/inventory/{group}.parquet",
        weights=detector_weights,
        box_corrections=box_corrections_input,
    output:
        photos="results/images/photos/{batch}/{group}.parquet",
    log:
        run="logs/images/process_photos/{batch}/{group}.log",
        # photos processed vs taken from the store: a fact of this run, not of the data, so a log (an output
        # would be hashed into the release's provenance, which must not depend on what the store held)
        counts="logs/images/process_photos/{batch}/{group}.json",
    benchmark:
        "benchmarks/images/process_photos/{batch}/{group}.tsv"
    conda:
        PHOTO_ENV
    resources:
        gpu=detector_gpus,
        runtime=photo_job_runtime,
    params:
        cli=CLI,
        answers=box_corrections_answers,
        store=STORE,
        backend=DETECTOR["backend"],
        weights=weights_option,
        detector_params=batch_detector_params_json,
        image_params=IMAGE_PARAMS_JSON,
        image_dir=image_dir_args,
        box_corrections=box_corrections_option,
        code_version=IMAGE_CODE_VERSION,
        detector_version=DETECTOR_VERSION,
        shipped_model=shipped_model_of,
        # a model or rule file replaced by one with an older time (cp -p, rsync -a) changes the results too
        fingerprint=fingerprint_of(detector_weights),
    shell:
        "{params.cli} images photos {input.inventory:q} --batch {wildcards.batch} "
        "--store {params.store:q} -o {output.photos:q} --summary {log.counts:q} "
        "--backend {params.backend} {params.weights} {params.box_corrections} "
        "--detector-params {params.detector_params:q} --image-params {params.image_params:q} "
        "--image-dir {params.image_dir:q} > {log.run} 2>&1"


rule process_images:
    input:
        records="results/ingest/shards/{shard}/records.parquet",
        photos=shard_photo_tables,
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
    params:
        cli=CLI,
        store=STORE,
        outdir=subpath(output.summary, parent=True),
        sheet_size=config["images"]["contact_sheet_size"],
        code_version=IMAGE_CODE_VERSION,
    shell:
        "{params.cli} images shard {input.records:q} --photos {input.photos:q} "
        "--store {params.store:q} --outdir {params.outdir:q} "
        "--contact-sheet-size {params.sheet_size} > {log} 2>&1"


rule images_summary:
    input:
        shards=expand("results/images/{shard}/summary.json", shard=SHARDS),
        tables=expand("results/images/{shard}/images.parquet", shard=SHARDS),
        box_corrections=box_corrections_input,
        # the records ingest refused: a box correction naming one says so, not unknown_processid
        record_rejects=expand("results/ingest/shards/{shard}/rejects.parquet", shard=SHARDS)
        + expand("results/ingest/exports/{batch}/rejects.parquet", batch=EXPORT_BATCHES),
    output:
        summary=report(
            "results/images/summary.json",
            caption="../report/images_summary.rst",
            category="Images",
        ),
        box_corrections="results/images/box_corrections.tsv",
    log:
        "logs/images/summary.log",
    benchmark:
        "benchmarks/images/summary.tsv"
    conda:
        "../../envs/images.yaml"
    params:
        cli=CLI,
        code=CODE["images"],
        answers=box_corrections_answers,
        box_corrections=box_corrections_option,
    shell:
        "{params.cli} images summary {input.shards:q} "
        "--images {input.tables:q} {params.box_corrections} --corrections-out {output.box_corrections:q} "
        "--record-rejects {input.record_rejects:q} "
        "-o {output.summary:q} > {log} 2>&1"
