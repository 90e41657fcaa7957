"""The published BIOSCAN-5M partitioning protocol (protocol), the workflow's split step with its freeze (stage), and the
in-process `metadata` command that runs the stages up to here (local)."""
