"""The transcoder's descriptor set, built at runtime from the generated modules.

Envoy's ``grpc_json_transcoder`` needs a serialized
``google.protobuf.FileDescriptorSet`` holding every file that defines the
transcoded services *and every file they import* (``google/api/http.proto``
for the ``google.api.http`` rules, ``google/api/httpbody.proto``,
``google/protobuf/descriptor.proto`` ...), each after its imports. Instead of
running ``protoc --include_imports`` and committing a ``.pb`` blob, the set is
assembled from the ``DESCRIPTOR`` objects of the generated ``*_pb2`` modules:
the descriptor set always matches the code that the gRPC server itself runs,
and is never written by hand.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType

from google.api import annotations_pb2  # registers google.api.http before any parsing
from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pb2

DescriptorSource = ModuleType | _descriptor.FileDescriptor


def _file_descriptor(source: DescriptorSource) -> _descriptor.FileDescriptor:
    if isinstance(source, _descriptor.FileDescriptor):
        return source
    fd = getattr(source, "DESCRIPTOR", None)
    if not isinstance(fd, _descriptor.FileDescriptor):
        raise TypeError(f"{source!r} is not a generated *_pb2 module or FileDescriptor")
    return fd


def ordered_file_descriptors(
    sources: Iterable[DescriptorSource],
) -> list[_descriptor.FileDescriptor]:
    """The given files plus all transitive imports, each after its imports."""
    ordered: list[_descriptor.FileDescriptor] = []
    seen: set[str] = set()

    def visit(fd: _descriptor.FileDescriptor) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)  # post-order: dependencies first

    for source in sources:
        visit(_file_descriptor(source))
    return ordered


def status_detail_modules() -> list[ModuleType]:
    """``google/rpc/status.proto`` and ``error_details.proto``.

    With ``convert_grpc_status`` the transcoder prints a failed call's
    ``google.rpc.Status`` as JSON; a detail (``ErrorInfo``, ``BadRequest``...)
    whose type is not in the descriptor set makes that fail, and the error
    then reaches the Lua filter in a harder form (see ``lua.py``).
    """
    from google.rpc import error_details_pb2, status_pb2

    return [status_pb2, error_details_pb2]


def descriptor_set(
    sources: Iterable[DescriptorSource], *, with_status_details: bool = True
) -> descriptor_pb2.FileDescriptorSet:
    """A ``FileDescriptorSet`` of ``sources`` and their transitive imports.

    ``serialized_pb`` is the exact ``FileDescriptorProto`` protoc embedded in
    the module, so custom options (``google.api.http``) survive unchanged.
    ``with_status_details`` adds :func:`status_detail_modules`.
    """
    sources = list(sources) + (status_detail_modules() if with_status_details else [])
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in ordered_file_descriptors(sources):
        fds.file.add().MergeFromString(fd.serialized_pb)
    return fds


def descriptor_set_bytes(
    modules: Iterable[DescriptorSource], *, with_status_details: bool = True
) -> bytes:
    """Serialized ``FileDescriptorSet`` for Envoy's ``proto_descriptor``/``_bin``."""
    return descriptor_set(modules, with_status_details=with_status_details).SerializeToString()


_HTTP_VERBS = ("get", "put", "post", "delete", "patch")


def bindings(rule) -> Iterator[tuple[str, str, str]]:
    """``(HTTP method, path template, body)`` of a ``google.api.http`` rule and its ``additional_bindings``."""
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern in _HTTP_VERBS:
            yield pattern.upper(), getattr(binding, pattern), binding.body
        elif pattern == "custom":
            yield binding.custom.kind.upper(), binding.custom.path, binding.body


def http_rules(
    fds: descriptor_pb2.FileDescriptorSet, services: Iterable[str]
) -> list[tuple[str, str]]:
    """``(HTTP method, path template)`` of every ``google.api.http`` rule
    (including ``additional_bindings``) of the named services' methods."""
    wanted = set(services)
    rules: list[tuple[str, str]] = []
    for file in fds.file:
        for service in file.service:
            full_name = f"{file.package}.{service.name}" if file.package else service.name
            if full_name not in wanted:
                continue
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                rules.extend((verb, path) for verb, path, _ in bindings(rule))
    return rules
