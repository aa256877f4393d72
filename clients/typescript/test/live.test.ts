/**
 * Against a live gliner2-serve on the tiny checkpoint, started here: every
 * conformance vector through the plain connect client and through
 * GlinerClient, then the thin client's own features (offsets, raw-JSON calls,
 * history, models, errors, deadlines, cancellation, TLS).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { clone, fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import {
  BatchExtractRequestSchema,
  BatchExtractResponseSchema,
  ExtractRequestSchema,
  ExtractResponseSchema,
  ExtractionResultSchema,
  GlinerClient,
  GlinerError,
  GlinerService,
  OffsetMap,
  ValueKind,
  type ExtractionResult,
  type SchemaInit,
  type Span,
} from "../src/index.js";
import { startServer, type LiveServer } from "./server.js";
import { startTlsProxy, type TlsProxy } from "./tls.js";
import { differences, loadVectors, withoutVolatile, type Vector } from "./vectors.js";

const vectors = loadVectors();
const SEED = "Tim Cook, the chief executive of Apple, met Sundar Pichai of Google in Paris on Monday.";
// Astral characters (emoji, a flag, ZWJ sequences, CJK Extension B, math letters) before, inside and after mentions.
const ASTRAL =
  "𝒜lice 👩‍👩‍👧 Wong met 𠮷田 Tarō of Acme 🚀 Corp in 東京 🇯🇵 on Monday, then 🎉 Bob 😀 Smith joined Globex 🏢 in Paris 🇫🇷.";
const ENTITIES: SchemaInit = { entities: [{ name: "person" }, { name: "company" }, { name: "location" }] };
const EVERYTHING: SchemaInit = {
  ...ENTITIES,
  classifications: [{ name: "tone", labels: ["formal", "casual"] }],
  structures: [
    {
      name: "meeting",
      fields: [
        { name: "who", kind: ValueKind.LIST },
        { name: "where", kind: ValueKind.STR },
        { name: "mood", kind: ValueKind.STR, choices: ["good", "bad"] },
      ],
    },
  ],
  relations: [{ name: "works_for" }, { name: "located_in" }],
};

let server: LiveServer;
let client: GlinerClient;

before(async () => {
  server = await startServer(vectors.api_key);
  client = new GlinerClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
}, { timeout: 180_000 });

after(async () => {
  client?.close();
  await server?.stop();
});

/** Every span of `result` that has offsets, with where it is. */
function spans(result: ExtractionResult): Array<{ where: string; span: { text: string; start?: number; end?: number } }> {
  const found: Array<{ where: string; span: { text: string; start?: number; end?: number } }> = [];
  result.entities.forEach((mention, index) => found.push({ where: `entities[${index}]`, span: mention }));
  for (const structure of result.structures) {
    structure.records.forEach((record, recordIndex) => {
      for (const field of record.fields) {
        field.values.forEach((value, index) =>
          found.push({ where: `${structure.name}[${recordIndex}].${field.name}[${index}]`, span: value }),
        );
      }
    });
  }
  result.relations.forEach((relation, index) => {
    for (const [side, span] of [["head", relation.head], ["tail", relation.tail]] as const) {
      if (span) {
        found.push({ where: `relations[${index}].${side}`, span });
      }
    }
  });
  return found.filter(({ span }) => span.start !== undefined || span.end !== undefined);
}

/**
 * Asserts that every span of `result` (UTF-16 offsets) slices `text` to its
 * text; returns how many spans it checked and how many of them have UTF-16
 * offsets that differ from the code point ones (where conversion mattered).
 */
function assertSlices(result: ExtractionResult, text: string, label: string): { checked: number; shifted: number } {
  const offsets = new OffsetMap(text);
  let shifted = 0;
  const all = spans(result);
  for (const { where, span } of all) {
    const start = span.start ?? 0;
    const end = span.end ?? 0;
    assert.equal(text.slice(start, end), span.text, `${label} ${where}: text.slice(${start}, ${end})`);
    if (offsets.toCodePoint(start) !== start || offsets.toCodePoint(end) !== end) {
      shifted += 1;
    }
  }
  return { checked: all.length, shifted };
}

/** A copy of `result` with its UTF-16 offsets turned back into the service's code points. */
function asCodePoints(result: ExtractionResult, text: string): ExtractionResult {
  const copy = clone(ExtractionResultSchema, result);
  const offsets = new OffsetMap(text);
  for (const { span } of spans(copy)) {
    const mutable = span as Span;
    if (mutable.start !== undefined) mutable.start = offsets.toCodePoint(mutable.start);
    if (mutable.end !== undefined) mutable.end = offsets.toCodePoint(mutable.end);
  }
  return copy;
}

function errorOf(error: GlinerError) {
  return { code: error.code, reason: error.reason, field: error.field };
}

async function failure(promise: Promise<unknown>): Promise<GlinerError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GlinerError, `expected a GlinerError, got ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

describe("conformance vectors (clients/conformance/vectors.json)", () => {
  let sessions: Http2SessionManager;
  let raw: ReturnType<typeof createClient<typeof GlinerService>>;
  before(() => {
    sessions = new Http2SessionManager(server.baseUrl);
    raw = createClient(GlinerService, createGrpcTransport({ baseUrl: server.baseUrl, sessionManager: sessions }));
  });
  after(() => sessions.abort());

  const shiftedByVector = new Map<string, number>();

  for (const vector of vectors.vectors) {
    const headers = { "x-api-key": vector.api_key ?? vectors.api_key };
    const compare = (printed: JsonObject) =>
      assert.deepEqual(differences(withoutVolatile(printed, vectors.volatile), vector.response, vectors.score_tolerance), []);

    test(`${vector.name} (${vector.method}), connect client: ${vector.error ? "error details" : "proto JSON"}`, async () => {
      let printed: JsonObject;
      try {
        if (vector.method === "Extract") {
          const response = await raw.extract(fromJson(ExtractRequestSchema, vector.request), { headers, timeoutMs: 60_000 });
          printed = toJson(ExtractResponseSchema, response, { useProtoFieldName: true }) as JsonObject;
        } else {
          const response = await raw.batchExtract(fromJson(BatchExtractRequestSchema, vector.request), { headers, timeoutMs: 60_000 });
          printed = toJson(BatchExtractResponseSchema, response, { useProtoFieldName: true }) as JsonObject;
        }
      } catch (error) {
        assert.ok(vector.error, `unexpected error ${String(error)}`);
        assert.deepEqual(errorOf(GlinerError.from(error)), vector.error);
        return;
      }
      assert.equal(vector.error, undefined, "expected an error");
      compare(printed);
    });

    test(`${vector.name} (${vector.method}), GlinerClient: ${vector.error ? "GlinerError" : "proto JSON, UTF-16 offsets slice the text"}`, async () => {
      const call = headers["x-api-key"] === vectors.api_key ? {} : { headers };
      const answer = vector.method === "Extract" ? extractVector(vector, call) : batchVector(vector, call);
      if (vector.error) {
        assert.deepEqual(errorOf(await failure(answer)), vector.error);
        return;
      }
      const { printed, shifted } = await answer;
      compare(printed);
      shiftedByVector.set(vector.name, shifted);
    });
  }

  test("the Unicode vectors exercise the conversion (some UTF-16 offsets differ from code points)", () => {
    for (const name of ["unicode_offsets", "batch"]) {
      assert.ok((shiftedByVector.get(name) ?? 0) > 0, `${name}: no span whose offsets shift`);
    }
  });

  /** Through GlinerClient: slices checked, then offsets back to code points, printed for comparison. */
  async function extractVector(vector: Vector, call: { headers?: Record<string, string> }) {
    const request = fromJson(ExtractRequestSchema, vector.request);
    const response = await client.extract(request.text, request.schema ?? {}, { ...requestOptions(request), ...call });
    const result = response.result;
    let shifted = 0;
    if (result) {
      shifted = assertSlices(result, request.text, vector.name).shifted;
      response.result = asCodePoints(result, request.text);
    }
    return { printed: toJson(ExtractResponseSchema, response, { useProtoFieldName: true }) as JsonObject, shifted };
  }

  async function batchVector(vector: Vector, call: { headers?: Record<string, string> }) {
    const request = fromJson(BatchExtractRequestSchema, vector.request);
    const response = await client.batchExtract(request.texts, request.schema ?? {}, { ...requestOptions(request), ...call });
    assert.equal(response.results.length, request.texts.length);
    let shifted = 0;
    response.results = response.results.map((result, index) => {
      const text = request.texts[index]!;
      shifted += assertSlices(result, text, `${vector.name}[${index}]`).shifted;
      return asCodePoints(result, text);
    });
    return { printed: toJson(BatchExtractResponseSchema, response, { useProtoFieldName: true }) as JsonObject, shifted };
  }
});

function requestOptions(request: { threshold?: number; modelId: string; projectId: string; trainingJobId: string; privacyMode: boolean }) {
  return {
    threshold: request.threshold,
    modelId: request.modelId || undefined,
    projectId: request.projectId || undefined,
    trainingJobId: request.trainingJobId || undefined,
    privacyMode: request.privacyMode || undefined,
  };
}

describe("GlinerClient", () => {
  test("extract: every offset slices the JavaScript string, astral characters included", async () => {
    const { result } = await client.extract(ASTRAL, EVERYTHING, { threshold: 0.01 });
    assert.ok(result);
    const { checked, shifted } = assertSlices(result, ASTRAL, "astral");
    assert.ok(result.entities.length > 0 && result.structures.length > 0 && result.relations.length > 0);
    assert.ok(checked > 10, `only ${checked} spans`);
    assert.ok(shifted > 0, "no span after an astral character");
    // the choice field has a value but no offsets
    const mood = result.structures[0]?.records[0]?.fields.find((field) => field.name === "mood");
    assert.ok(mood && mood.values.length === 1 && mood.values[0]!.start === undefined);
    assert.ok(["good", "bad"].includes(mood.values[0]!.text));
  });

  test("extract: the same mentions as the connect client, offsets converted", async () => {
    const thin = await client.extract(ASTRAL, ENTITIES, { threshold: 0.05 });
    const plain = await client.glinerService.extract({ text: ASTRAL, schema: ENTITIES, threshold: 0.05 });
    const offsets = new OffsetMap(ASTRAL);
    const thinMentions = thin.result!.entities;
    const plainMentions = plain.result!.entities;
    assert.equal(thinMentions.length, plainMentions.length);
    thinMentions.forEach((mention, index) => {
      const codePoints = plainMentions[index]!;
      assert.equal(mention.text, codePoints.text);
      assert.equal(mention.start, offsets.toUtf16(codePoints.start));
      assert.equal(mention.end, offsets.toUtf16(codePoints.end));
      // the service's offsets count code points
      assert.equal([...ASTRAL].slice(codePoints.start, codePoints.end).join(""), codePoints.text);
    });
  });

  test("batchExtract: each result's offsets are into its own text", async () => {
    const texts = [ASTRAL, SEED, "🇪🇸🇪🇸 Zoë 🎬 Saldaña met José 👨‍👩‍👧‍👦 in Málaga."];
    const response = await client.batchExtract(texts, EVERYTHING, { threshold: 0.05 });
    assert.equal(response.results.length, texts.length);
    assert.equal(response.inferenceIds.length, texts.length);
    let shifted = 0;
    response.results.forEach((result, index) => {
      shifted += assertSlices(result, texts[index]!, `batch[${index}]`).shifted;
    });
    assert.ok(shifted > 0);
  });

  test("gliner2, run, inference: the provider's JSON, untouched (offsets in code points)", async () => {
    const text = "Zoë Saldaña 🎬 met José Núñez in Málaga 🇪🇸 and Łódź on Friday.";
    const codePoints = [...text];
    type Mention = { text: string; start: number; end: number; score?: number };
    const answer = await client.gliner2<{ entities: Record<string, Mention[]> }>({
      text,
      labels: ["person", "location"],
      threshold: 0.05,
      include_spans: true,
    });
    const mentions = Object.values(answer.entities).flat();
    assert.ok(mentions.length > 0);
    let differ = 0;
    for (const mention of mentions) {
      assert.equal(codePoints.slice(mention.start, mention.end).join(""), mention.text);
      differ += text.slice(mention.start, mention.end) === mention.text ? 0 : 1;
    }
    assert.ok(differ > 0, "no mention after an astral character");
    // the JSON text itself is accepted too
    const same = await client.gliner2(JSON.stringify({ text, labels: ["person", "location"], threshold: 0.05, include_spans: true }));
    assert.deepEqual(same, answer);

    const run = await client.run<Array<{ status: string; output: { entities: Mention[] } }>>({
      input: [{ text, parameters: { entity_types: ["person"], threshold: 0.05 } }, { text: SEED, parameters: { entity_types: ["company"] } }],
    });
    assert.equal(run.length, 2);
    assert.deepEqual(run.map((item) => item.status), ["success", "success"]);
    for (const mention of run[0]!.output.entities) {
      assert.equal(codePoints.slice(mention.start, mention.end).join(""), mention.text);
    }

    const inference = await client.inference<{ id: string; result: { entities: Record<string, unknown> } }>({
      text,
      schema: { entities: ["person", "location"] },
      threshold: 0.05,
    });
    assert.match(inference.id, /^inf_/);
    assert.deepEqual(Object.keys(inference.result.entities), ["person", "location"]);

    const refused = await failure(client.gliner2({ text, labels: [] }));
    assert.equal(refused.code, "INVALID_ARGUMENT");
    assert.equal(refused.reason, "INVALID_REQUEST");
  });

  test("listModels", async () => {
    const models = await client.listModels();
    assert.equal(models.object, "list");
    assert.equal(models.data.length, 1);
    assert.equal(models.data[0]!.isDefault, true);
    assert.equal(models.data[0]!.loaded, true);
    const page = await client.listModels({ limit: 1 });
    assert.equal(page.firstId, models.data[0]!.id);
    const missing = await failure(client.listModels({ afterId: "no-such-model" }));
    assert.deepEqual(errorOf(missing), { code: "NOT_FOUND", reason: "NOT_FOUND", field: "after_id" });
  });

  test("history: listInferences, getInference, submitFeedback", async () => {
    const projectId = `ts-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const extracted = await client.extract(ASTRAL, ENTITIES, { threshold: 0.3, projectId, trainingJobId: "job-ts" });
    const hidden = await client.extract(SEED, ENTITIES, { projectId, privacyMode: true });

    const page = await client.listInferences({ projectId, limit: 10 });
    assert.equal(page.total, 2);
    assert.equal(page.limit, 10);
    assert.deepEqual(page.inferences.map((inference) => inference.id), [hidden.inferenceId, extracted.inferenceId]);

    const record = await client.getInference(extracted.inferenceId);
    assert.equal(record.id, extracted.inferenceId);
    assert.equal(record.route, "grpc:Extract");
    assert.equal(record.text, ASTRAL);
    assert.equal(record.projectId, projectId);
    assert.equal(record.trainingJobId, "job-ts");
    assert.ok(record.createdAt instanceof Date && Math.abs(record.createdAt.getTime() - Date.now()) < 600_000);
    assert.deepEqual(record.parameters, { threshold: 0.3 });
    assert.ok(record.output !== null && typeof record.output === "object");
    assert.equal(record.feedback, null);

    const privateRecord = page.inferences[0]!;
    assert.equal(privateRecord.privacyMode, true);
    assert.equal(privateRecord.text, null);
    assert.equal(privateRecord.output, null);

    const corrected = { entities: { person: ["𝒜lice Wong"] } };
    const stored = await client.submitFeedback(extracted.inferenceId, { verdict: "incorrect", correctedOutput: corrected });
    assert.equal(stored.inferenceId, extracted.inferenceId);
    assert.equal(stored.feedback?.verdict, "incorrect");
    assert.deepEqual(stored.feedback?.correctedOutput, corrected);
    const withFeedback = await client.getInference(extracted.inferenceId);
    assert.equal(withFeedback.feedback?.id, stored.feedback?.id);
    assert.deepEqual(withFeedback.feedback?.correctedOutput, corrected);

    await client.submitFeedback(hidden.inferenceId, { verdict: "correct" });
    assert.equal((await client.listInferences({ projectId })).inferences[0]!.feedback?.verdict, "correct");

    const missing = await failure(client.getInference("inf_missing"));
    assert.deepEqual(errorOf(missing), { code: "NOT_FOUND", reason: "NOT_FOUND", field: null });
    const noVerdict = await failure(client.submitFeedback(extracted.inferenceId, { verdict: "" }));
    assert.deepEqual(errorOf(noVerdict), { code: "INVALID_ARGUMENT", reason: "INVALID_REQUEST", field: "verdict" });
  });

  test("errors: one GlinerError with the gRPC code, the ErrorInfo reason and the BadRequest field", async () => {
    const error = await failure(client.extract(" ", ENTITIES));
    assert.equal(error.code, "INVALID_ARGUMENT");
    assert.equal(error.grpcCode, Code.InvalidArgument);
    assert.equal(error.reason, "INVALID_REQUEST");
    assert.equal(error.field, "text");
    assert.equal(error.domain, "gliner.v1");
    assert.equal(error.errorMetadata.http_status, "400");
    assert.equal(error.fieldViolations.length, 1);
    assert.ok(error.rawMessage.length > 0);
    assert.equal(error.message, `INVALID_ARGUMENT: ${error.rawMessage}`);

    const anonymous = new GlinerClient({ baseUrl: server.baseUrl });
    try {
      const refused = await failure(anonymous.listModels());
      assert.deepEqual(errorOf(refused), { code: "UNAUTHENTICATED", reason: "UNAUTHORIZED", field: null });
      // a per-call key; and the service's other spelling of it
      await anonymous.listModels({ headers: { "x-api-key": server.apiKey } });
      await anonymous.listModels({ headers: { authorization: `Bearer ${server.apiKey}` } });
    } finally {
      anonymous.close();
    }

    const nobody = new GlinerClient({ baseUrl: `http://127.0.0.1:1`, apiKey: server.apiKey });
    try {
      assert.equal((await failure(nobody.listModels())).code, "UNAVAILABLE");
    } finally {
      nobody.close();
    }
  });

  test("deadlines: per call, and the client's default", async () => {
    const late = await failure(client.batchExtract([SEED, ASTRAL, SEED], EVERYTHING, { timeoutMs: 1 }));
    assert.equal(late.code, "DEADLINE_EXCEEDED");
    assert.equal(late.grpcCode, Code.DeadlineExceeded);

    const hurried = new GlinerClient({ baseUrl: server.baseUrl, apiKey: server.apiKey, timeoutMs: 1 });
    try {
      assert.equal((await failure(hurried.extract(SEED, EVERYTHING))).code, "DEADLINE_EXCEEDED");
      // a call's own deadline wins over the default; 0 = none
      assert.ok((await hurried.extract(SEED, ENTITIES, { timeoutMs: 30_000 })).result);
      assert.ok((await hurried.extract(SEED, ENTITIES, { timeoutMs: 0 })).result);
    } finally {
      hurried.close();
    }
  });

  test("cancellation: an AbortSignal, aborted before or during the call", async () => {
    const before = new AbortController();
    before.abort();
    const early = await failure(client.extract(SEED, ENTITIES, { signal: before.signal }));
    assert.equal(early.code, "CANCELLED");
    assert.equal(early.grpcCode, Code.Canceled);

    const during = new AbortController();
    const call = client.batchExtract(Array(16).fill(ASTRAL), EVERYTHING, { signal: during.signal, threshold: 0.01 });
    setTimeout(() => during.abort(), 5);
    assert.equal((await failure(call)).code, "CANCELLED");

    // the client goes on working
    assert.ok((await client.extract(SEED, ENTITIES)).result);
  });

  describe("TLS (a TLS-terminating proxy in front of the server, with client certificates)", () => {
    let proxy: TlsProxy;
    before(async () => {
      proxy = await startTlsProxy(server.port);
    });
    after(async () => {
      await proxy?.close();
    });

    test("with the CA and a client certificate: works", async () => {
      const secure = new GlinerClient({
        baseUrl: proxy.baseUrl,
        apiKey: server.apiKey,
        tls: { ca: proxy.serverCert, cert: proxy.clientCert, key: proxy.clientKey },
      });
      try {
        const { result } = await secure.extract(ASTRAL, ENTITIES, { threshold: 0.05 });
        assert.ok(result && result.entities.length > 0);
        assertSlices(result, ASTRAL, "tls");
      } finally {
        secure.close();
      }
    });

    test("an untrusted server certificate, or no client certificate: refused", async () => {
      const untrusted = new GlinerClient({ baseUrl: proxy.baseUrl, apiKey: server.apiKey, tls: { cert: proxy.clientCert, key: proxy.clientKey } });
      const anonymous = new GlinerClient({ baseUrl: proxy.baseUrl, apiKey: server.apiKey, tls: { ca: proxy.serverCert } });
      try {
        // (connect-node reports a failed TLS handshake as INTERNAL, with Node's TLS error as the cause)
        const notTrusted = await failure(untrusted.listModels({ timeoutMs: 10_000 }));
        assert.match(notTrusted.message, /self[- ]signed certificate/i);
        const noCertificate = await failure(anonymous.listModels({ timeoutMs: 10_000 }));
        assert.match(noCertificate.message, /certificate required/i);
      } finally {
        untrusted.close();
        anonymous.close();
      }
    });
  });
});
