"""Benchmarks: ``streaming_responses`` against Starlette's ``StreamingResponse``, row by row.

Run ``python -m benchmarks`` (``make bench``) for the real numbers, ``python -m benchmarks --smoke``
for a seconds-long run of every row at tiny size (the test suite does this). One uvicorn server
serves :mod:`benchmarks.app`; curl times the throughput rows and a raw-socket reader times the
latency row. The rows live in :mod:`benchmarks._cases`; add one there (and its endpoint in
:mod:`benchmarks.app`) and the runner, the table and the JSON pick it up.

The rule that keeps the numbers honest: both sides of a row run on the same server, with the
same client, alternating in the same run, and a response of the wrong size or content is a
failed row, never a number.
"""
