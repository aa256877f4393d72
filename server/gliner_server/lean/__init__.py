"""Torch-free serving runtime: gliner2's inference ported onto numpy, `tokenizers` and OpenVINO."""
