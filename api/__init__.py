"""The HTTP API: routes, schemas and problem+json errors. No torch import at start-up; no
training in a request."""
