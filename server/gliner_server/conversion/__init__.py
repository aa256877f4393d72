"""Conversion-time helpers: read a gliner2 library model and write what the lean runtime loads."""
