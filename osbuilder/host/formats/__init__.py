"""Output formats: one module per format, each turning the assembled build into files."""
