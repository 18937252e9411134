"""The `exact_match` metric: `exact_match.py`, loaded by `evaluate.load(<this folder>)`.

A package only so that the wheel ships the script (setup.py finds packages); nothing here is imported.
"""
