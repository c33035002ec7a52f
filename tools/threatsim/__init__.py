"""The threat simulator, its scoring and the end-to-end report.

``scenario`` simulates targets and IR sensors into detections, ``evaluation`` scores
tracks against the truth (OSPA/GOSPA, RMSE against the PCRLB, identity switches),
``report`` is the CLI that runs a scenario through the tracker and prints the figures
(``python -m tools.threatsim.report``), and ``ingest`` builds IngestDetections request
messages from detections. Used by the tests, the benchmarks and operators; not part of
the running threat service and not shipped in the service image.
"""
