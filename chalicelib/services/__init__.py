"""Use cases: they orchestrate the domain through ports and know nothing of AWS."""
