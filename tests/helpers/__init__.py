"""Helpers shared by the tests: plain modules imported as ``tests.helpers.<name>``.

Fixtures live in ``tests/conftest.py`` (which may import from here); nothing imports ``tests.conftest``.
"""
