"""Package discovery: every sub-package of hf_scratchgpt, found on disk, plus the model-card templates.

The rest of the metadata is in pyproject.toml; tests/test_packaging.py builds a wheel and checks it.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["hf_scratchgpt", "hf_scratchgpt.*"]), "hf_scratchgpt.model_cards"])
