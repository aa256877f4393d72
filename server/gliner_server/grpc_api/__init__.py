"""Thin gRPC front end over the core."""
