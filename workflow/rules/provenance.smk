# Provenance: the build as a PROV-O graph. The job plan (every job of the workflow with its inputs, outputs
# and a hash of its parameters) is worked out from the rules themselves when the Snakefile is parsed; the
# provenance rule hashes every file the plan names and writes the graph the release ships.

PLAN = _plan()  # after every rule is defined: the plan is read from them
PLANNED_OUTPUTS = sorted({path for job in PLAN for path in job["outputs"]})


localrules:
    provenance_plan,  # writes one JSON string: not worth a cluster job


rule provenance_plan:
    output:
        plan="results/provenance/plan.json",
    log:
        "logs/provenance/plan.log",
    params:
        plan=json.dumps(
            {"jobs": PLAN, "config": config, "git_revision": _git_revision()},
            sort_keys=True,
        ),
    run:
        with open(output.plan, "w") as handle:
            handle.write(f"{params.plan}\n")


rule provenance:
    input:
        # the config's sources: a target other than `all` (the release) must stop too when one is gone, or the
        # plan silently leaves out every job downstream of it
        sources=missing_sources(),
        plan="results/provenance/plan.json",
        files=PLANNED_OUTPUTS,
    output:
        graph="results/provenance/provenance.jsonld",
        config="results/provenance/config.json",
    log:
        "logs/provenance/provenance.log",
    benchmark:
        "benchmarks/provenance/provenance.tsv"
    conda:
        "../../envs/ingest.yaml"
    resources:
        mem_mb=more_each_attempt(4000),  # 5.15M records: 2.78 GB with accounting (README, Scale)
    params:
        cli=CLI,
        code=CODE["export"],
    shell:
        "{params.cli} provenance {input.plan:q} -o {output.graph:q} --config-out {output.config:q} > {log} 2>&1"
