"""Local AWS emulator tooling; works on any Terraform config and imports no construct."""
