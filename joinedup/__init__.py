"""joinedup: link education, health and care records of children with SEND on pseudonyms and
publish outcome metrics to DuckDB.

One module per pipeline stage: synth, pseudonymise, ingest, validate, link, metrics, publish,
report. `settings` holds the configuration, `contracts` the extract schemas from `schemas/`.
"""

__version__ = "0.1.0"
