"""``gliner2-envoy-config``: the static files to run your own Envoy in front of ``gliner2-serve --no-envoy``.

Writes into one folder (the repository's ``envoy/`` by default)::

    envoy.yaml          the bootstrap: config_dict() of the same EnvoySettings gliner2-serve builds from its flags
    gliner.pb           the transcoder's FileDescriptorSet (descriptors.py, from the server's own *_pb2 modules)
    error_filter.lua    the Lua error filter (lua.py, rendered from the error table)
    openapi.json        served by Envoy at GET /openapi.json (openapi.py)

``envoy.yaml`` names the other three by relative path, which Envoy resolves
against its working directory: run it as ``cd envoy && envoy -c envoy.yaml``
(or ``--files-dir DIR`` writes that directory into the paths instead). With
``--istio FILE`` (the default at the repository root: ``deploy/istio/envoy-filter.yaml``)
it also writes an Istio ``EnvoyFilter`` that puts the same Lua filter and
transcoder (descriptor set inlined as base64) on the server pod's sidecar.

Nothing here is configuration logic of its own: the settings come from
:func:`gliner_server.front.envoy_settings` and the document from
:func:`gliner_server.envoy.config.config_dict`. The output is deterministic
(no timestamps, no paths of this machine unless given), so the checked-in
files can be compared with a fresh run (``--check``, and the tests).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path, PurePosixPath

import yaml

from ..front import DEFAULT_MAX_REQUEST_BYTES, parse_upstream

COMMAND = "gliner2-envoy-config"
CONFIG_FILE = "envoy.yaml"
DESCRIPTOR_FILE = "gliner.pb"
LUA_FILE = "error_filter.lua"
OPENAPI_FILE = "openapi.json"
ISTIO_FILTER = Path("deploy") / "istio" / "envoy-filter.yaml"
DEFAULT_UPSTREAM = ("127.0.0.1", 50051)
DEFAULT_PORT = 8080
DEFAULT_ADMIN_PORT = 9901
DEFAULT_HOST = "0.0.0.0"
DEFAULT_ISTIO_PORT = 50051
HCM = "envoy.filters.network.http_connection_manager"
LUA_FILTER = "envoy.filters.http.lua"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
ROUTER = "envoy.filters.http.router"


def repo_root() -> Path | None:
    """The source checkout this module runs from (an editable install), else None."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "server" / "gliner_server").is_dir():
        return root
    return None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("out_dir", nargs="?", type=Path, metavar="OUT_DIR",
                   help="where to write the files (default: envoy/ at the repository root, else ./envoy)")
    p.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT",
                   help="a gliner2-serve --no-envoy server (repeatable; a DNS name stands for every address it "
                        f"resolves to; default {DEFAULT_UPSTREAM[0]}:{DEFAULT_UPSTREAM[1]})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"Envoy's port for REST and native gRPC (default {DEFAULT_PORT})")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address Envoy listens on (default {DEFAULT_HOST})")
    p.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT,
                   help=f"Envoy's admin port, on 127.0.0.1 (default {DEFAULT_ADMIN_PORT})")
    p.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                   help="largest REST body (413 beyond); give the servers the same --max-request-bytes "
                        f"(default {DEFAULT_MAX_REQUEST_BYTES})")
    p.add_argument("--rate-limit", type=int, default=0, metavar="RPS",
                   help="requests per second per API key (429); 0 = none (default)")
    p.add_argument("--rate-limit-burst", type=int, help="requests a key may send at once (default: RPS)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) path as Envoy will see it: the listener speaks TLS")
    p.add_argument("--tls-key", help="PEM private key path of --tls-cert")
    p.add_argument("--access-log", default="stdout", metavar="stdout|off|FILE",
                   help="Envoy's access log: standard output (default), FILE, or off")
    p.add_argument("--files-dir", default="", metavar="DIR",
                   help="the directory envoy.yaml names for gliner.pb, error_filter.lua and openapi.json "
                        "(default: none, i.e. Envoy's working directory)")
    p.add_argument("--istio", type=Path, metavar="FILE",
                   help="also write the Istio EnvoyFilter for the server's sidecar (default at the repository "
                        f"root without OUT_DIR: {ISTIO_FILTER})")
    p.add_argument("--istio-port", type=int, default=DEFAULT_ISTIO_PORT,
                   help=f"the server pod's gRPC port the EnvoyFilter patches (default {DEFAULT_ISTIO_PORT})")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the files differ from what would be written")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    try:
        args.upstream = [parse_upstream(u) for u in args.upstream] or [DEFAULT_UPSTREAM]
    except ValueError as error:
        p.error(str(error))
    root = repo_root()
    if args.out_dir is None:
        args.out_dir = (root or Path.cwd()) / "envoy"
        if args.istio is None and root is not None:
            args.istio = root / ISTIO_FILTER
    return args


def _command_line(args) -> str:
    """The options that shaped the files (never OUT_DIR or --istio: where they went does not change them)."""
    parts = [COMMAND]
    if args.upstream != [DEFAULT_UPSTREAM]:
        for host, port in args.upstream:
            parts += ["--upstream", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    for flag, value, default in (
        ("--port", args.port, DEFAULT_PORT), ("--host", args.host, DEFAULT_HOST),
        ("--admin-port", args.admin_port, DEFAULT_ADMIN_PORT),
        ("--max-request-bytes", args.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES),
        ("--rate-limit", args.rate_limit, 0), ("--rate-limit-burst", args.rate_limit_burst, None),
        ("--tls-cert", args.tls_cert, None), ("--tls-key", args.tls_key, None),
        ("--access-log", args.access_log, "stdout"), ("--files-dir", args.files_dir, ""),
        ("--istio-port", args.istio_port, DEFAULT_ISTIO_PORT),
    ):
        if value != default:
            parts += [flag, str(value)]
    return " ".join(parts)


def _settings(args):
    """gliner2-serve's own settings for these flags, with files named instead of inlined."""
    from ..front import envoy_settings

    settings = envoy_settings(args, list(args.upstream), args.max_request_bytes)

    def path(name: str) -> str:
        return str(PurePosixPath(args.files_dir) / name) if args.files_dir else name

    return dataclasses.replace(settings, openapi_json=None, openapi_path=path(OPENAPI_FILE),
                               descriptor_path=path(DESCRIPTOR_FILE), lua_path=path(LUA_FILE))


def descriptor_bytes() -> bytes:
    """The FileDescriptorSet the running service's Envoy loads."""
    from ..grpc_api.server import PROTO_MODULES
    from .descriptors import descriptor_set_bytes

    return descriptor_set_bytes(PROTO_MODULES)


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, no line folding, no aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(document) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1 << 16)


def _header(lines: list[str], comment: str = "#") -> str:
    return "".join(f"{comment} {line}".rstrip() + "\n" for line in lines)


def render_files(args) -> dict[str, bytes]:
    """File name -> content of the static Envoy folder."""
    import json

    from ..openapi import service_document
    from .config import config_dict, lua_source

    settings = _settings(args)
    descriptor = descriptor_bytes()
    command = _command_line(args)
    where = ", ".join(f"{h}:{p}" for h, p in settings.upstreams)
    header = _header([
        f"Generated by `{command}` (gliner_server.envoy.static_files) from the code",
        "gliner2-serve renders its own Envoy configuration with. Do not edit: regenerate (envoy/README.md).",
        "",
        f"Envoy on {settings.listen_host}:{settings.listen_port} (REST and native gRPC), admin on "
        f"127.0.0.1:{settings.admin_port},",
        f"in front of `gliner2-serve --no-envoy` at {where}.",
        f"Run from the folder that holds {settings.descriptor_path}, {settings.lua_path} and "
        f"{settings.openapi_path}:",
        "  cd envoy && envoy -c envoy.yaml" if not args.files_dir else
        f"  envoy -c envoy.yaml   (the files are read from {args.files_dir})",
    ])
    return {
        CONFIG_FILE: (header + to_yaml(config_dict(settings, descriptor))).encode(),
        DESCRIPTOR_FILE: descriptor,
        LUA_FILE: (_header([f"Written by `{command}`; do not edit (envoy/README.md)."], "--")
                   + lua_source()).encode(),
        OPENAPI_FILE: (json.dumps(service_document(), indent=2, ensure_ascii=False) + "\n").encode(),
    }


def istio_filter(args) -> bytes:
    """An Istio EnvoyFilter: the same Lua filter and transcoder as envoy.yaml, on the server's inbound sidecar.

    Both are taken from :func:`config_dict` with their sources inlined (a sidecar
    has no files of ours): inserted before the router of the inbound listener
    on the gRPC port, Lua first, so it sees the transcoder's and the router's
    errors too.
    """
    from .config import config_dict

    inline = dataclasses.replace(_settings(args), descriptor_path="", lua_path="", openapi_path="")
    hcm = config_dict(inline, descriptor_bytes())["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"][0]["typed_config"]
    filters = {f["name"]: f for f in hcm["http_filters"]}

    def insert_before_router(name: str) -> dict:
        return {
            "applyTo": "HTTP_FILTER",
            "match": {"context": "SIDECAR_INBOUND", "listener": {
                "portNumber": args.istio_port,
                "filterChain": {"filter": {"name": HCM, "subFilter": {"name": ROUTER}}},
            }},
            "patch": {"operation": "INSERT_BEFORE", "value": filters[name]},
        }

    manifest = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "gliner2-transcoder", "labels": {"app": "gliner2"}},
        "spec": {
            "workloadSelector": {"labels": {"app": "gliner2", "role": "server"}},
            "configPatches": [insert_before_router(LUA_FILTER), insert_before_router(TRANSCODER)],
        },
    }
    header = _header([
        f"Generated by `{_command_line(args)}` (gliner_server.envoy.static_files); do not edit.",
        "The REST front of gliner2-serve on the server pod's own Istio sidecar: the Lua error filter and the",
        "gRPC-JSON transcoder (descriptor set inlined, services, print and validation options) exactly as in",
        f"envoy/envoy.yaml, inserted before the router of the inbound listener on the gRPC port ({args.istio_port}).",
        "Native gRPC passes through both untouched. See the README's \"Your own Envoy or mesh\".",
    ])
    return (header + to_yaml(manifest)).encode()


def outputs(args) -> dict[Path, bytes]:
    """Every file this run writes, by path."""
    files = {args.out_dir / name: content for name, content in render_files(args).items()}
    if args.istio is not None:
        files[args.istio] = istio_filter(args)
    return files


def main(argv=None) -> None:
    args = parse_args(argv)
    files = outputs(args)
    if args.check:
        stale = [path for path, content in files.items() if not path.is_file() or path.read_bytes() != content]
        for path in stale:
            print(f"{COMMAND}: {path} is not what {_command_line(args)} writes", file=sys.stderr)
        if stale:
            sys.exit(1)
        print(f"{COMMAND}: {len(files)} files up to date")
        return
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
        print(f"{COMMAND}: wrote {path}")


if __name__ == "__main__":
    main()
