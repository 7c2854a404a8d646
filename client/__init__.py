"""Spillway's command-line client and demo, built on the standard library only.

Invariant: the client talks to Spillway only over its public HTTP API (``api.py`` here);
it imports nothing from ``api/``, ``worker/`` or ``shared/``, so it can be copied and run on
any machine with Python 3.11 and no dependencies.

Modules:
    api: ``ApiClient`` (urllib, bearer key, JSON, errors as ``ApiError``) and presigned downloads.
    filters: ``--filter`` expressions into the API's filter JSON.
    verify: counting CSV records the way a CSV reader sees them.
    progress: the progress line and when to print it.
    export: ``run_export`` and ``download_export``, the flows the CLI and demo share.
    cli: ``python -m client.cli``.
    demo: ``python -m client.demo`` (``make demo``).
"""
