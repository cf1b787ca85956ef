"""What a cell measures: the metric of each record column, and the records schema version.

Planning needs these names (``[report] metric`` is checked against them; a cell's id includes
the schema version, so a change of the records' format redoes every cell), and the engine
and the store use them, so they live here, below both.
"""

# Order of the last axis of the engine's reduced metrics and of the record columns.
METRICS = (
    "grad_mean_abs",  # mean |g| over the tensor: the blog's number
    "grad_l2",  # ||g||_2
    "grad_max_abs",  # max |g|
    "grad_nonfinite",  # count of NaN/inf entries in g
    "grad_zero",  # count of entries exactly 0 (dead ReLUs, underflow)
    "weight_l2",  # ||W||_2 at initialisation
    "act_rms",  # RMS of this layer's output h_l over batch and features
    "grad_act_rms",  # RMS of dL/dh_l
)
COUNT_METRICS = ("grad_nonfinite", "grad_zero")
# One value per layer, repeated on each of its parameters' rows: a test of them belongs on
# one row per layer (its weight), not on every parameter.
LAYER_METRICS = ("act_rms", "grad_act_rms")

# Version of the records files (gradprobe.bench.store.records, docs/records.md).
RECORDS_SCHEMA_VERSION = 5
