"""Plain helpers shared by several test modules: constants, builders and fakes, never fixtures.

Fixtures live in ``tests/conftest.py`` and the plugins it lists, so that no test module has
to import another test module to reuse its set-up.
"""
