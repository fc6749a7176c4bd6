"""Services, clients and the machinery that runs them, above any transport."""
