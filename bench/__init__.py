"""Benchmarks that measure pedfrac beside a peer in the same run and print the ratios.

Each module runs as ``.venv/bin/python -m bench.<name> [options]``; ``--help`` lists the options.
Absolute times on a shared machine drift from run to run, so every table states the ratio to a
peer measured in the same run: dcmtk's storescp, a bare pynetdicom SCP, or the members' raw
forward passes. docs/performance.md records the latest tables and the commands behind them.
"""
