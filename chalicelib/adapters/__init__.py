"""The AWS side: DynamoDB repositories. Clients are injected, with lazy defaults."""
