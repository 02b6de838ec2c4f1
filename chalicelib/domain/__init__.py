"""Pure domain: no AWS, no Chalice. Everything here is testable with plain objects."""
