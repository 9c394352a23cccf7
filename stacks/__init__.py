"""Thin compositions of modules: one pipeline stack class for every environment."""
