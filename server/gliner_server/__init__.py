"""Self-hosted GLiNER2 inference service: OpenVINO runtime, gRPC server, Envoy front end."""
import sys as _sys

__version__ = "0.1.0"

# OpenVINO's model conversion (and NNCF) send usage telemetry to Google Analytics unless the user opted
# out in a consent file under ~/intel: each conversion forks a copy of this process to post it. Offline,
# those copies hang in DNS lookups and outlive the server (hundreds of MB each); online, a self-hosted
# service would report on its users' models. Both fall back to their no-op stubs when the package is
# missing, which this makes it, for this process only (nothing is written to the user's home).
_sys.modules.setdefault("openvino_telemetry", None)
