"""Load the AWS provider binding's submodules without running its package ``__init__``."""

from __future__ import annotations

import importlib.util
import sys
import types

PROVIDER_PACKAGE = "cdktf_cdktf_provider_aws"


def install_lean_provider_loader(package: str = PROVIDER_PACKAGE) -> None:
    """Put a bare package object in ``sys.modules`` unless the real one is loaded already.

    Submodule imports then resolve against the package's directory as usual; each one imports
    ``.._jsii`` (the assembly) and registers its own jsii types, which is all a synth needs.
    """
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed; run `make setup`")
    bare = types.ModuleType(package, "AWS provider binding, loaded submodule by submodule")
    bare.__path__ = list(spec.submodule_search_locations)
    bare.__file__ = spec.origin
    bare.__spec__ = spec
    bare.__package__ = package
    sys.modules[package] = bare
