"""Release statistics: the tables (compute, with the barcode distances in genetics), the stage that reads a
release and writes them (stage), their figures (figures) and the offline basemap (basemap)."""
