"""The release's download formats, one module each; the registry of them is ``registry``."""
