"""The reference service's application routes."""
