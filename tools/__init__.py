"""Developer tooling that works on any Terraform configuration; imports no construct."""
