"""Who may call what: proven caller identities, credentials, the development CA."""
