/** Without a server: offset conversion, error details, codes, options. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  EntityMentionSchema,
  ExtractionResultSchema,
  GlinerClient,
  GlinerError,
  OffsetMap,
  RelationMentionSchema,
  SpanSchema,
  codePointToUtf16,
  decodeBadRequest,
  decodeErrorInfo,
  decodeRetryInfo,
  grpcCodeName,
  toUtf16Offsets,
  utf16ToCodePoint,
} from "../src/index.js";

const hex = (text: string) => Uint8Array.from(Buffer.from(text, "hex"));

// Serialised by Python's google.rpc.error_details_pb2 (another protobuf implementation):
//   ErrorInfo(reason="INVALID_REQUEST", domain="gliner.v1", metadata={"http_status": "400", "b": "ü"})
const ERROR_INFO = hex(
  "0a0f494e56414c49445f524551554553541209676c696e65722e76311a120a0b687474705f73746174757312033430301a070a01621202c3bc",
);
//   BadRequest(field_violations=[("schema", "Schema is empty"), ("text", "Text 🎬 empty")])
const BAD_REQUEST = hex(
  "0a190a06736368656d61120f536368656d6120697320656d7074790a170a0474657874120f5465787420f09f8eac20656d707479",
);
//   RetryInfo(retry_delay=Duration(seconds=2, nanos=500000000))
const RETRY_INFO = hex("0a0808021080cab5ee01");

describe("offsets", () => {
  test("code points to UTF-16 and back", () => {
    const text = "a😀b🇪🇸c";
    const map = new OffsetMap(text);
    assert.equal(map.codePoints, [...text].length);
    const utf16 = [0, 1, 3, 4, 6, 8, 9];
    utf16.forEach((unit, codePoint) => {
      assert.equal(map.toUtf16(codePoint), unit);
      assert.equal(map.toCodePoint(unit), codePoint);
    });
    assert.equal(map.toCodePoint(2), 1, "inside a surrogate pair: the pair's code point");
    assert.equal(map.toUtf16(7), 10, "past the end stays past the end");
    assert.equal(codePointToUtf16(text, 2), 3);
    assert.equal(utf16ToCodePoint(text, 3), 2);
  });

  test("text without astral characters: identical offsets", () => {
    const map = new OffsetMap("Zoë Saldaña in Łódź");
    for (const offset of [0, 3, 11, 19]) {
      assert.equal(map.toUtf16(offset), offset);
      assert.equal(map.toCodePoint(offset), offset);
    }
  });

  test("a lone surrogate counts as one code point (it reaches the server as U+FFFD)", () => {
    const text = "x\uD83Dy😀z";
    const map = new OffsetMap(text);
    assert.equal(map.codePoints, 5);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((offset) => map.toUtf16(offset)), [0, 1, 2, 3, 5, 6]);
  });

  test("toUtf16Offsets converts mentions, structure values and relation spans, not choice values", () => {
    const text = "🎉 Bob 😀 met Ann";
    const result = create(ExtractionResultSchema, {
      entities: [create(EntityMentionSchema, { text: "Bob", label: "person", start: 2, end: 5 })],
      structures: [
        {
          name: "meeting",
          records: [{ fields: [{ name: "who", values: [{ text: "Ann", start: 12, end: 15 }, { text: "good" }] }] }],
        },
      ],
      relations: [
        create(RelationMentionSchema, {
          relation: "knows",
          head: create(SpanSchema, { text: "Bob", start: 2, end: 5 }),
          tail: create(SpanSchema, { text: "Ann", start: 12, end: 15 }),
        }),
      ],
    });
    toUtf16Offsets(result, text);
    const slice = (span: { start?: number; end?: number }) => text.slice(span.start, span.end);
    assert.equal(slice(result.entities[0]!), "Bob");
    const values = result.structures[0]!.records[0]!.fields[0]!.values;
    assert.equal(slice(values[0]!), "Ann");
    assert.equal(values[1]!.start, undefined);
    assert.equal(values[1]!.end, undefined);
    assert.equal(slice(result.relations[0]!.head!), "Bob");
    assert.equal(slice(result.relations[0]!.tail!), "Ann");
  });
});

describe("error details", () => {
  test("ErrorInfo, BadRequest and RetryInfo as another implementation writes them", () => {
    assert.deepEqual(decodeErrorInfo(ERROR_INFO), {
      reason: "INVALID_REQUEST",
      domain: "gliner.v1",
      metadata: { http_status: "400", b: "ü" },
    });
    assert.deepEqual(decodeBadRequest(BAD_REQUEST), [
      { field: "schema", description: "Schema is empty" },
      { field: "text", description: "Text 🎬 empty" },
    ]);
    assert.equal(decodeRetryInfo(RETRY_INFO), 2500);
  });

  test("unknown fields are skipped", () => {
    // field 9 (varint 5), field 10 (bytes "zz"), then ErrorInfo's own fields
    const withUnknown = new Uint8Array([0x48, 0x05, 0x52, 0x02, 0x7a, 0x7a, ...ERROR_INFO]);
    assert.equal(decodeErrorInfo(withUnknown).reason, "INVALID_REQUEST");
  });

  test("GlinerError.from a ConnectError with the server's details", () => {
    const connectError = new ConnectError("Schema is empty", Code.InvalidArgument);
    connectError.details = [
      { type: "google.rpc.ErrorInfo", value: ERROR_INFO },
      { type: "google.rpc.BadRequest", value: BAD_REQUEST },
      { type: "google.rpc.RetryInfo", value: RETRY_INFO },
      { type: "google.rpc.DebugInfo", value: new Uint8Array([0x0a, 0x01, 0x78]) },
      { type: "google.rpc.ErrorInfo", value: new Uint8Array([0x0a, 0x05]) }, // malformed: ignored
    ];
    const error = GlinerError.from(connectError);
    assert.ok(error instanceof Error && error instanceof GlinerError);
    assert.equal(error.name, "GlinerError");
    assert.equal(error.code, "INVALID_ARGUMENT");
    assert.equal(error.grpcCode, Code.InvalidArgument);
    assert.equal(error.rawMessage, "Schema is empty");
    assert.equal(error.message, "INVALID_ARGUMENT: Schema is empty");
    assert.equal(error.reason, "INVALID_REQUEST");
    assert.equal(error.domain, "gliner.v1");
    assert.equal(error.field, "schema");
    assert.equal(error.fieldViolations.length, 2);
    assert.equal(error.retryDelayMs, 2500);
    assert.equal(error.cause, connectError);
    assert.equal(GlinerError.from(error), error);
  });

  test("no details: reason and field are null; anything else is UNKNOWN", () => {
    const bare = GlinerError.from(new ConnectError("gone", Code.Unavailable));
    assert.deepEqual([bare.code, bare.reason, bare.field, bare.retryDelayMs], ["UNAVAILABLE", null, null, null]);
    assert.equal(GlinerError.from(new TypeError("boom")).code, "UNKNOWN");
  });

  test("every connect Code has its gRPC name", () => {
    const expected: Record<string, string> = {
      Canceled: "CANCELLED", Unknown: "UNKNOWN", InvalidArgument: "INVALID_ARGUMENT", DeadlineExceeded: "DEADLINE_EXCEEDED",
      NotFound: "NOT_FOUND", AlreadyExists: "ALREADY_EXISTS", PermissionDenied: "PERMISSION_DENIED",
      ResourceExhausted: "RESOURCE_EXHAUSTED", FailedPrecondition: "FAILED_PRECONDITION", Aborted: "ABORTED",
      OutOfRange: "OUT_OF_RANGE", Unimplemented: "UNIMPLEMENTED", Internal: "INTERNAL", Unavailable: "UNAVAILABLE",
      DataLoss: "DATA_LOSS", Unauthenticated: "UNAUTHENTICATED",
    };
    const names = Object.keys(Code).filter((key) => Number.isNaN(Number(key)));
    assert.equal(names.length, Object.keys(expected).length);
    for (const name of names) {
      assert.equal(grpcCodeName(Code[name as keyof typeof Code]), expected[name], name);
    }
  });
});

describe("options", () => {
  test("base URLs and TLS", () => {
    assert.throws(() => new GlinerClient({ baseUrl: "127.0.0.1:8080" }), TypeError);
    assert.throws(() => new GlinerClient({ baseUrl: "ftp://127.0.0.1:8080" }), TypeError);
    assert.throws(() => new GlinerClient({ baseUrl: "http://127.0.0.1:8080", tls: { ca: "x" } }), TypeError);
    new GlinerClient().close();
    new GlinerClient({ baseUrl: "https://gliner.example:443", tls: { rejectUnauthorized: true } }).close();
  });
});
