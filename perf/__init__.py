"""The tritongru perf suite: sweeps (``sweeps``), providers (``providers``), measurement
(``measure``), run metadata (``machine``), result files (``store``), plots and summary (``report``),
the performance targets (``targets``) and the driver (``bench``, run as ``python -m tritongru bench``)."""
