"""Thin compositions of modules: one pipeline stack class for every environment."""

import modules  # noqa: F401  (lean provider loader before the stacks import any binding)
