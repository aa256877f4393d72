/**
 * @gliner2-service/client: a thin typed client of the self-hosted GLiNER2
 * service over gRPC, with the generated gliner.v1 stubs.
 *
 *     import { GlinerClient } from "@gliner2-service/client";
 *     const client = new GlinerClient({ baseUrl: "http://127.0.0.1:8080", apiKey: "KEY" });
 *     const text = "Tim Cook leads Apple 🍎.";
 *     const { result } = await client.extract(text, { entities: [{ name: "person" }, { name: "company" }] });
 *     for (const m of result?.entities ?? []) console.log(m.label, text.slice(m.start, m.end), m.score);
 *     client.close();
 */
export {
  GlinerClient,
  toUtf16Offsets,
  DEFAULT_BASE_URL,
  DEFAULT_TIMEOUT_MS,
  type CallOptions,
  type ExtractOptions,
  type FeedbackRecord,
  type GlinerClientOptions,
  type InferencePage,
  type InferenceRecord,
  type JsonBody,
  type ListInferencesOptions,
  type ListModelsOptions,
  type SchemaInit,
  type TlsOptions,
} from "./client.js";
export {
  GlinerError,
  grpcCodeName,
  decodeBadRequest,
  decodeErrorInfo,
  decodeRetryInfo,
  type FieldViolation,
  type GrpcCodeName,
} from "./errors.js";
export { OffsetMap, codePointToUtf16, utf16ToCodePoint } from "./offsets.js";
// The generated gliner.v1 messages, enums and service descriptors (protoc-gen-es).
export * from "./gen/gliner/v1/gliner_service_pb.js";
export * from "./gen/gliner/v1/history_service_pb.js";
export * from "./gen/gliner/v1/results_pb.js";
export * from "./gen/gliner/v1/schema_pb.js";
