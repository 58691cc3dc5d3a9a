"""Doorman's benchmark harness: ``python -m bench`` (``--quick``, ``--profile``). See bench/README.md."""
