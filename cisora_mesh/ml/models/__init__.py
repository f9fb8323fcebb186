"""Shipped model files (a package so that setuptools package-data ships the `.npz`)."""
