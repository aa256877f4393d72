import type { SecureClientSessionOptions } from "node:http2";

import { toJson, type JsonObject, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, ValueSchema, type Timestamp, type Value } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager, type Http2SessionOptions } from "@connectrpc/connect-node";

import { GlinerError } from "./errors.js";
import { OffsetMap } from "./offsets.js";
import {
  GlinerService,
  type BatchExtractResponse,
  type ExtractResponse,
  type ListModelsResponse,
} from "./gen/gliner/v1/gliner_service_pb.js";
import { InferenceHistoryService, type Feedback, type Inference } from "./gen/gliner/v1/history_service_pb.js";
import type { ExtractionResult, Span } from "./gen/gliner/v1/results_pb.js";
import type { SchemaSchema } from "./gen/gliner/v1/schema_pb.js";
import type { HttpBody } from "./gen/google/api/httpbody_pb.js";

/** The default server: a local gliner2-serve (Envoy's port, which also speaks native gRPC). */
export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";
/** The default deadline of every call, in milliseconds (as the Python client's 30 s). */
export const DEFAULT_TIMEOUT_MS = 30_000;

type Pem = string | Buffer | Array<string | Buffer>;

/** TLS settings for an `https://` base URL (passed to Node's `http2.connect`). */
export interface TlsOptions {
  /** CA certificate(s) to trust instead of Node's bundled roots (e.g. a private CA). */
  ca?: Pem;
  /** Client certificate chain, for mutual TLS. */
  cert?: Pem;
  /** Private key of `cert`. */
  key?: Pem;
  /** The name the server's certificate must carry, when it is not the URL's host. */
  servername?: string;
  /** false skips certificate verification: for experiments only. Default true. */
  rejectUnauthorized?: boolean;
}

export interface GlinerClientOptions {
  /**
   * `http://host:port` (plaintext HTTP/2, the default: {@link DEFAULT_BASE_URL})
   * or `https://host:port` (TLS; see `tls`). Envoy's port and the gRPC server's
   * own port both serve gRPC.
   */
  baseUrl?: string;
  /** Sent as `x-api-key` on every call (unless a call sets `x-api-key` or `authorization` itself). */
  apiKey?: string;
  /** TLS settings; needs an `https://` base URL. */
  tls?: TlsOptions;
  /** Default deadline of each call in milliseconds ({@link DEFAULT_TIMEOUT_MS}); 0 = none. */
  timeoutMs?: number;
  /** More options for Node's `http2.connect` (those of `tls` win). */
  nodeOptions?: SecureClientSessionOptions;
  /** connect-node's HTTP/2 keep-alive and idle settings. */
  http2?: Http2SessionOptions;
  /** connect interceptors, run on every call (after the one that adds the API key). */
  interceptors?: Interceptor[];
}

/** Per-call options. */
export interface CallOptions {
  /** This call's deadline in milliseconds (the client's default when unset; 0 = none). Past it: DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Aborting it cancels the call: CANCELLED. */
  signal?: AbortSignal;
  /** Extra request metadata, e.g. another `x-api-key`. */
  headers?: HeadersInit;
}

/** A `gliner.v1.Schema`, as an object: `{entities: [{name: "person"}], classifications: [...], ...}`. */
export type SchemaInit = MessageInitShape<typeof SchemaSchema>;

/** Options of extract and batchExtract. */
export interface ExtractOptions extends CallOptions {
  /** Confidence threshold in [0, 1]; the server's 0.5 when unset. */
  threshold?: number;
  /** The model; the server's default model when unset. */
  modelId?: string;
  /** Recorded in the inference history. */
  projectId?: string;
  /** Recorded in the inference history. */
  trainingJobId?: string;
  /** Record metadata only (no text, no output) in the history. */
  privacyMode?: boolean;
}

/** A raw-JSON dialect call's body: a value for `JSON.stringify`, or the JSON text itself. */
export type JsonBody = object | string;

/** ListModels' paging (the Anthropic SDK's); everything when unset. */
export interface ListModelsOptions extends CallOptions {
  limit?: number;
  afterId?: string;
  beforeId?: string;
}

/** ListInferences' filters and page. */
export interface ListInferencesOptions extends CallOptions {
  /** Page size, 1 to 1000; the server's 20 when unset. */
  limit?: number;
  /** Rows to skip. */
  offset?: number;
  modelId?: string;
  task?: string;
  projectId?: string;
  trainingJobId?: string;
}

/** Feedback on a recorded inference. */
export interface FeedbackRecord {
  id: string;
  /** "correct" or "incorrect". */
  verdict: string;
  /** The corrected output given with "incorrect". */
  correctedOutput: JsonObject | null;
  createdAt: Date | null;
}

/**
 * A recorded inference, as plain values. `schema`, `parameters` and `output`
 * are the JSON the server recorded: their offsets are the service's own,
 * Unicode code points (not converted).
 */
export interface InferenceRecord {
  id: string;
  createdAt: Date | null;
  /** The route that served it, e.g. "grpc:Extract" or "/gliner-2". */
  route: string;
  modelId: string;
  task: string;
  /** The input text; null in privacy mode. */
  text: string | null;
  schema: JsonValue | null;
  parameters: JsonValue | null;
  /** The result as returned; null in privacy mode. */
  output: JsonValue | null;
  latencyMs: number;
  projectId: string;
  trainingJobId: string;
  privacyMode: boolean;
  /** The current (latest) feedback. */
  feedback: FeedbackRecord | null;
  /** The call's request id (x-request-id), the same for every text of one call. */
  requestId: string;
}

/** A page of inferences, newest first. */
export interface InferencePage {
  inferences: InferenceRecord[];
  /** How many match the filters in all. */
  total: number;
  limit: number;
  offset: number;
}

/**
 * A thin typed client of `gliner.v1.GlinerService` and
 * `gliner.v1.InferenceHistoryService` over gRPC (HTTP/2).
 *
 * Every failure is thrown as a {@link GlinerError}. Offsets in what `extract`
 * and `batchExtract` return are UTF-16 offsets into the string you passed:
 * `text.slice(mention.start, mention.end) === mention.text`. The raw-JSON
 * calls (`gliner2`, `run`, `inference`) return the provider's JSON untouched:
 * their offsets are the service's, Unicode code points.
 *
 * `glinerService` and `historyService` are the plain connect clients (the
 * generated types, the service's code point offsets) for anything else.
 */
export class GlinerClient {
  /** The plain connect client of GlinerService (offsets as the service gives them: code points). */
  readonly glinerService: Client<typeof GlinerService>;
  /** The plain connect client of InferenceHistoryService. */
  readonly historyService: Client<typeof InferenceHistoryService>;
  private readonly sessions: Http2SessionManager;

  constructor(options: GlinerClientOptions = {}) {
    const baseUrl = options.baseUrl ?? DEFAULT_BASE_URL;
    const url = new URL(baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`baseUrl must be http://host:port or https://host:port, not ${baseUrl}`);
    }
    if (options.tls && url.protocol !== "https:") {
      throw new TypeError(`tls needs an https:// baseUrl, not ${baseUrl}`);
    }
    const nodeOptions: SecureClientSessionOptions = { ...options.nodeOptions };
    for (const [name, value] of Object.entries(options.tls ?? {})) {
      if (value !== undefined) {
        (nodeOptions as Record<string, unknown>)[name] = value;
      }
    }
    // One HTTP/2 connection, owned here so that close() can end it.
    this.sessions = new Http2SessionManager(url, options.http2, nodeOptions);
    const interceptors: Interceptor[] = [];
    const apiKey = options.apiKey;
    if (apiKey) {
      interceptors.push((next) => async (request) => {
        if (!request.header.has("x-api-key") && !request.header.has("authorization")) {
          request.header.set("x-api-key", apiKey);
        }
        return await next(request);
      });
    }
    interceptors.push(...(options.interceptors ?? []));
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager: this.sessions,
      interceptors,
      // connect-es: undefined means no deadline
      defaultTimeoutMs: timeoutMs > 0 ? timeoutMs : undefined,
    });
    this.glinerService = createClient(GlinerService, transport);
    this.historyService = createClient(InferenceHistoryService, transport);
  }

  /** Extracts what `schema` asks for from `text`; offsets are UTF-16 offsets into `text`. */
  async extract(text: string, schema: SchemaInit, options: ExtractOptions = {}): Promise<ExtractResponse> {
    const response = await this.call(() =>
      this.glinerService.extract({ text, schema, ...extractFields(options) }, callOptions(options)),
    );
    if (response.result) {
      toUtf16Offsets(response.result, text);
    }
    return response;
  }

  /** The same schema applied to several texts; each result's offsets are UTF-16 offsets into its text. */
  async batchExtract(texts: readonly string[], schema: SchemaInit, options: ExtractOptions = {}): Promise<BatchExtractResponse> {
    const response = await this.call(() =>
      this.glinerService.batchExtract({ texts: [...texts], schema, ...extractFields(options) }, callOptions(options)),
    );
    response.results.forEach((result, index) => {
      const text = texts[index];
      if (text !== undefined) {
        toUtf16Offsets(result, text);
      }
    });
    return response;
  }

  /**
   * Fastino's POST /gliner-2 over gRPC: the provider's JSON body in, its JSON
   * answer out, untouched (offsets in code points). Object keys keep their
   * order (GLiNER2 orders its prompt by them) except that JavaScript puts
   * integer-like keys first: pass the JSON text when such keys must stay in place.
   */
  async gliner2<T = JsonValue>(body: JsonBody, options: CallOptions = {}): Promise<T> {
    return this.jsonCall((request, call) => this.glinerService.gliner2(request, call), body, options);
  }

  /** Fastino's POST /run: `{model_id, input: [{text, parameters}]}` in, the JSON array out (as gliner2). */
  async run<T = JsonValue>(body: JsonBody, options: CallOptions = {}): Promise<T> {
    return this.jsonCall((request, call) => this.glinerService.run(request, call), body, options);
  }

  /** Pioneer's POST /inference: `{model_id, text, schema, threshold, ...}` in, its JSON answer out (as gliner2). */
  async inference<T = JsonValue>(body: JsonBody, options: CallOptions = {}): Promise<T> {
    return this.jsonCall((request, call) => this.glinerService.inference(request, call), body, options);
  }

  /** The registered models and /run endpoints. */
  async listModels(options: ListModelsOptions = {}): Promise<ListModelsResponse> {
    const { limit, afterId, beforeId } = options;
    return this.call(() => this.glinerService.listModels({ limit, afterId, beforeId }, callOptions(options)));
  }

  /** The caller's inferences (those of this API key's client), newest first. */
  async listInferences(options: ListInferencesOptions = {}): Promise<InferencePage> {
    const { limit, offset, modelId, task, projectId, trainingJobId } = options;
    const page = await this.call(() =>
      this.historyService.listInferences(
        { limit, offset, modelId, task, projectId, trainingJobId },
        callOptions(options),
      ),
    );
    return { inferences: page.inferences.map(inferenceRecord), total: page.total, limit: page.limit, offset: page.offset };
  }

  /** One of the caller's inferences (NOT_FOUND when it is not theirs). */
  async getInference(id: string, options: CallOptions = {}): Promise<InferenceRecord> {
    return inferenceRecord(await this.call(() => this.historyService.getInference({ id }, callOptions(options))));
  }

  /** Marks an inference correct, or gives the corrected output; returns the stored feedback. */
  async submitFeedback(
    id: string,
    feedback: { verdict: "correct" | "incorrect" | (string & {}); correctedOutput?: JsonObject },
    options: CallOptions = {},
  ): Promise<{ inferenceId: string; feedback: FeedbackRecord | null }> {
    const response = await this.call(() =>
      this.historyService.submitFeedback(
        { id, verdict: feedback.verdict, correctedOutput: feedback.correctedOutput },
        callOptions(options),
      ),
    );
    return { inferenceId: response.inferenceId, feedback: response.feedback ? feedbackRecord(response.feedback) : null };
  }

  /** Ends the client's connection (calls still running fail). */
  close(): void {
    this.sessions.abort();
  }

  private async call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw GlinerError.from(error);
    }
  }

  private async jsonCall<T>(
    method: (request: { body: { contentType: string; data: Uint8Array } }, call: CallOptions) => Promise<HttpBody>,
    body: JsonBody,
    options: CallOptions,
  ): Promise<T> {
    const json = typeof body === "string" ? body : JSON.stringify(body);
    const data = new TextEncoder().encode(json);
    const answer = await this.call(() => method({ body: { contentType: "application/json", data } }, callOptions(options)));
    return JSON.parse(new TextDecoder().decode(answer.data)) as T;
  }
}

function callOptions(options: CallOptions): CallOptions {
  const { timeoutMs, signal, headers } = options;
  return { timeoutMs, signal, headers };
}

function extractFields(options: ExtractOptions) {
  const { threshold, modelId, projectId, trainingJobId, privacyMode } = options;
  return { threshold, modelId, projectId, trainingJobId, privacyMode };
}

function spanToUtf16(span: Span | undefined, offsets: OffsetMap): void {
  if (span === undefined) {
    return;
  }
  if (span.start !== undefined) {
    span.start = offsets.toUtf16(span.start);
  }
  if (span.end !== undefined) {
    span.end = offsets.toUtf16(span.end);
  }
}

/**
 * Converts, in place, every offset of `result` from the service's code points
 * to UTF-16 offsets into `text` (the text it was extracted from): entity
 * mentions, structure field values and relation heads and tails. Returns
 * `result`. The thin client's extract and batchExtract do this already; it is
 * for results of the plain connect clients.
 */
export function toUtf16Offsets(result: ExtractionResult, text: string): ExtractionResult {
  const offsets = new OffsetMap(text);
  for (const mention of result.entities) {
    mention.start = offsets.toUtf16(mention.start);
    mention.end = offsets.toUtf16(mention.end);
  }
  for (const structure of result.structures) {
    for (const record of structure.records) {
      for (const field of record.fields) {
        for (const value of field.values) {
          spanToUtf16(value, offsets);
        }
      }
    }
  }
  for (const relation of result.relations) {
    spanToUtf16(relation.head, offsets);
    spanToUtf16(relation.tail, offsets);
  }
  return result;
}

function date(timestamp: Timestamp | undefined): Date | null {
  return timestamp ? timestampDate(timestamp) : null;
}

function json(value: Value | undefined): JsonValue | null {
  return value ? toJson(ValueSchema, value) : null;
}

function feedbackRecord(feedback: Feedback): FeedbackRecord {
  return {
    id: feedback.id,
    verdict: feedback.verdict,
    correctedOutput: feedback.correctedOutput ?? null,
    createdAt: date(feedback.createdAt),
  };
}

function inferenceRecord(inference: Inference): InferenceRecord {
  return {
    id: inference.id,
    createdAt: date(inference.createdAt),
    route: inference.route,
    modelId: inference.modelId,
    task: inference.task,
    text: inference.text ?? null,
    schema: json(inference.schema),
    parameters: json(inference.parameters),
    output: json(inference.output),
    latencyMs: inference.latencyMs,
    projectId: inference.projectId,
    trainingJobId: inference.trainingJobId,
    privacyMode: inference.privacyMode,
    feedback: inference.feedback ? feedbackRecord(inference.feedback) : null,
    requestId: inference.requestId,
  };
}
