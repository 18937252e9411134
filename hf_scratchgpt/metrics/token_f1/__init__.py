"""The `token_f1` metric: `token_f1.py`, loaded by `evaluate.load(<this folder>)`.

A package only so that the wheel ships the script (setup.py finds packages); nothing here is imported.
"""
