import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";

/** gRPC status code names, as the gRPC specification (and Python's `grpc.StatusCode`) spell them. */
export type GrpcCodeName =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

/** The name of each numeric gRPC code (connect's `Code` enum has the same numbers). */
const CODE_NAMES: readonly GrpcCodeName[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The gRPC name of a numeric status code ("UNKNOWN" for a number outside the specification). */
export function grpcCodeName(code: number): GrpcCodeName {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/** One entry of `google.rpc.BadRequest.field_violations`. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * A failed call. `code` is the gRPC status name ("INVALID_ARGUMENT", ...),
 * `grpcCode` its number; `reason` is the `google.rpc.ErrorInfo` reason (the
 * REST API's error code, e.g. "INVALID_REQUEST"), `field` the first
 * `google.rpc.BadRequest` field violation's field ("schema", "text", ...), and
 * `retryDelayMs` the `google.rpc.RetryInfo` delay, each null when the server
 * sent none. `cause` is the underlying `ConnectError`.
 *
 * Note: gRPC spells code 1 "CANCELLED"; connect-es's enum says `Canceled`.
 */
export class GlinerError extends Error {
  override name = "GlinerError";
  /** The gRPC status code's name. */
  readonly code: GrpcCodeName;
  /** The gRPC status code's number (equal to connect's `Code`). */
  readonly grpcCode: Code;
  /** The server's message, without the code in front. */
  readonly rawMessage: string;
  /** `google.rpc.ErrorInfo.reason`: the REST API's error code. */
  readonly reason: string | null;
  /** `google.rpc.ErrorInfo.domain`. */
  readonly domain: string | null;
  /** `google.rpc.ErrorInfo.metadata`. */
  readonly errorMetadata: Readonly<Record<string, string>>;
  /** The first `google.rpc.BadRequest` field violation's field. */
  readonly field: string | null;
  /** Every `google.rpc.BadRequest` field violation. */
  readonly fieldViolations: readonly FieldViolation[];
  /** `google.rpc.RetryInfo.retry_delay` in milliseconds. */
  readonly retryDelayMs: number | null;
  /** The response headers and trailers the error came with. */
  readonly metadata: Headers;

  constructor(init: {
    grpcCode: Code;
    message: string;
    reason?: string | null;
    domain?: string | null;
    errorMetadata?: Record<string, string>;
    fieldViolations?: FieldViolation[];
    retryDelayMs?: number | null;
    metadata?: Headers;
    cause?: unknown;
  }) {
    const code = grpcCodeName(init.grpcCode);
    super(`${code}: ${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.grpcCode = init.grpcCode;
    this.rawMessage = init.message;
    this.reason = init.reason ?? null;
    this.domain = init.domain ?? null;
    this.errorMetadata = init.errorMetadata ?? {};
    this.fieldViolations = init.fieldViolations ?? [];
    this.field = this.fieldViolations[0]?.field ?? null;
    this.retryDelayMs = init.retryDelayMs ?? null;
    this.metadata = init.metadata ?? new Headers();
  }

  /** The GlinerError for anything a call threw (a ConnectError, or anything else as UNKNOWN). */
  static from(reason: unknown): GlinerError {
    if (reason instanceof GlinerError) {
      return reason;
    }
    const error = ConnectError.from(reason);
    const init: ConstructorParameters<typeof GlinerError>[0] = {
      grpcCode: error.code,
      message: error.rawMessage,
      metadata: error.metadata,
      cause: error,
    };
    const violations: FieldViolation[] = [];
    for (const detail of error.details) {
      // Incoming details are {type, value}: the type name from the Any's type
      // URL and the message's bytes (outgoing ones, {desc, value}, are only
      // made by code that raises errors itself).
      if (!("type" in detail)) {
        continue;
      }
      try {
        switch (detail.type) {
          case "google.rpc.ErrorInfo": {
            const info = decodeErrorInfo(detail.value);
            init.reason ??= info.reason;
            init.domain ??= info.domain;
            init.errorMetadata ??= info.metadata;
            break;
          }
          case "google.rpc.BadRequest":
            violations.push(...decodeBadRequest(detail.value));
            break;
          case "google.rpc.RetryInfo":
            init.retryDelayMs ??= decodeRetryInfo(detail.value);
            break;
        }
      } catch {
        // A malformed detail leaves its fields unset; the status itself still stands.
      }
    }
    init.fieldViolations = violations;
    return new GlinerError(init);
  }
}

/*
 * The three google.rpc detail messages the service sends, decoded from their
 * wire format.
 *
 * Why by hand: @bufbuild/protobuf ships only the well-known types
 * (google/protobuf/*), not google/rpc/error_details.proto, and this package's
 * generated code (src/gen, written by scripts/protos.py from the service's
 * protos, which do not import google/rpc) has no schema for them either, so
 * `ConnectError.findDetails()` has nothing to decode them with. Writing a
 * descriptor for them by hand would be hand-written "generated" code; a second
 * code generator run just for three messages would be a second source of
 * stubs outside scripts/protos.py. Their wire format is small and stable
 * (google.rpc has not renumbered a field in a decade), so we read it with
 * @bufbuild/protobuf's own BinaryReader:
 *
 *   message ErrorInfo  { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
 *   message BadRequest { repeated FieldViolation field_violations = 1; }
 *   message FieldViolation { string field = 1; string description = 2; ... }
 *   message RetryInfo  { google.protobuf.Duration retry_delay = 1; }
 *   message Duration   { int64 seconds = 1; int32 nanos = 2; }
 *   (a map entry is a message { key = 1; value = 2; })
 *
 * Unknown fields, and known fields of an unexpected wire type, are skipped, as
 * any protobuf parser does; for a repeated scalar the last value wins.
 */

/** Calls `field(number, wireType)` for each field of `bytes`; `field` returns false for fields it does not read. */
function readFields(bytes: Uint8Array, field: (reader: BinaryReader, number: number, wireType: WireType) => boolean): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (!field(reader, number, wireType)) {
      reader.skip(wireType, number);
    }
  }
}

/** A string field's value; undefined when the field came with another wire type (to be skipped). */
function stringField(reader: BinaryReader, wireType: WireType): string | undefined {
  return wireType === WireType.LengthDelimited ? reader.string() : undefined;
}

/** Decodes a `google.rpc.ErrorInfo`. */
export function decodeErrorInfo(bytes: Uint8Array): { reason: string; domain: string; metadata: Record<string, string> } {
  const info = { reason: "", domain: "", metadata: {} as Record<string, string> };
  readFields(bytes, (reader, number, wireType) => {
    if (wireType !== WireType.LengthDelimited) {
      return false;
    }
    if (number === 1) {
      info.reason = reader.string();
    } else if (number === 2) {
      info.domain = reader.string();
    } else if (number === 3) {
      let key = "";
      let value = "";
      readFields(reader.bytes(), (entry, entryNumber, entryWireType) => {
        const text = stringField(entry, entryWireType);
        if (text === undefined) {
          return false;
        }
        if (entryNumber === 1) {
          key = text;
        } else if (entryNumber === 2) {
          value = text;
        }
        return true;
      });
      info.metadata[key] = value;
    } else {
      return false;
    }
    return true;
  });
  return info;
}

/** Decodes a `google.rpc.BadRequest` into its field violations. */
export function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const violations: FieldViolation[] = [];
  readFields(bytes, (reader, number, wireType) => {
    if (number !== 1 || wireType !== WireType.LengthDelimited) {
      return false;
    }
    const violation: FieldViolation = { field: "", description: "" };
    readFields(reader.bytes(), (inner, innerNumber, innerWireType) => {
      if (innerNumber !== 1 && innerNumber !== 2) {
        return false;
      }
      const text = stringField(inner, innerWireType);
      if (text === undefined) {
        return false;
      }
      violation[innerNumber === 1 ? "field" : "description"] = text;
      return true;
    });
    violations.push(violation);
    return true;
  });
  return violations;
}

/** Decodes a `google.rpc.RetryInfo` into its delay in milliseconds (0 when it has none). */
export function decodeRetryInfo(bytes: Uint8Array): number {
  let seconds = 0;
  let nanos = 0;
  readFields(bytes, (reader, number, wireType) => {
    if (number !== 1 || wireType !== WireType.LengthDelimited) {
      return false;
    }
    readFields(reader.bytes(), (duration, durationNumber, durationWireType) => {
      if (durationWireType !== WireType.Varint) {
        return false;
      }
      if (durationNumber === 1) {
        seconds = Number(duration.int64());
      } else if (durationNumber === 2) {
        nanos = duration.int32();
      } else {
        return false;
      }
      return true;
    });
    return true;
  });
  return seconds * 1000 + nanos / 1e6;
}
