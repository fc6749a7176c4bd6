"""The `jesus` command."""
