"""The release: its layout (paths), pass 1 (spool: one table per split), the side files, and one module per download
format under formats/ (a registry), orchestrated by release.build_release."""
