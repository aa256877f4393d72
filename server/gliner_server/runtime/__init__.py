"""Model runtime: checkpoint loading, OpenVINO encoder, loaded models."""
