"""Tests of `hf_scratchgpt.book`, the book's own API on this package's classes, one file per module."""
