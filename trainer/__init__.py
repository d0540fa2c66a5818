"""Jingtiao's trainer: built-in fine-tuning algorithms, run as ``python -m trainer``.

Imports neither Django nor the platform's apps. ``trainer.catalog`` and
``trainer.datavalidation`` need only the standard library.
"""
