"""Reusable constructs of the pipeline, one file per concern.

Importing this package first installs a lean loader for the AWS provider binding: the binding's
package ``__init__`` imports all ~2,100 resource submodules (10-30 s here), although a stack
needs a few dozen. We register the package as a bare namespace, so that an ordinary
``from cdktf_cdktf_provider_aws.kms_key import KmsKey`` loads just that submodule and the shared
``_jsii`` assembly. Synthesized output is byte-identical (checked by tests/test_foundation.py).
"""

from modules._provider_loader import install_lean_provider_loader

install_lean_provider_loader()
