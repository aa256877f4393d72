/** clients/conformance/vectors.json and its comparison rules (see the README beside it). */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

import { REPO_ROOT } from "./server.js";

export interface VectorError {
  code: string;
  reason: string | null;
  field: string | null;
}

export interface Vector {
  name: string;
  method: "Extract" | "BatchExtract";
  request: JsonObject;
  api_key?: string;
  response?: JsonObject;
  error?: VectorError;
}

export interface Vectors {
  api_key: string;
  volatile: string[];
  score_tolerance: number;
  vectors: Vector[];
}

export const VECTORS_PATH = join(REPO_ROOT, "clients", "conformance", "vectors.json");

export function loadVectors(): Vectors {
  return JSON.parse(readFileSync(VECTORS_PATH, "utf8")) as Vectors;
}

/** `printed` without the top-level volatile fields. */
export function withoutVolatile(printed: JsonValue, volatile: readonly string[]): JsonValue {
  if (printed === null || typeof printed !== "object" || Array.isArray(printed)) {
    return printed;
  }
  return Object.fromEntries(Object.entries(printed).filter(([key]) => !volatile.includes(key)));
}

/**
 * Where `actual` differs from `expected`: lists in order, objects by their key
 * sets, numbers under a "score" key within `tolerance`, everything else exactly.
 */
export function differences(actual: JsonValue | undefined, expected: JsonValue | undefined, tolerance: number, path = "$", key = ""): string[] {
  if (typeof actual === "number" && typeof expected === "number" && key === "score") {
    return Math.abs(actual - expected) <= tolerance ? [] : [`${path}: ${actual} is not within ${tolerance} of ${expected}`];
  }
  if (Array.isArray(actual) && Array.isArray(expected)) {
    if (actual.length !== expected.length) {
      return [`${path}: ${actual.length} items, expected ${expected.length}`];
    }
    return actual.flatMap((item, index) => differences(item, expected[index], tolerance, `${path}[${index}]`, key));
  }
  if (isObject(actual) && isObject(expected)) {
    const keys = new Set([...Object.keys(actual), ...Object.keys(expected)]);
    return [...keys].flatMap((name) =>
      !(name in actual)
        ? [`${path}.${name}: missing, expected ${JSON.stringify(expected[name])}`]
        : !(name in expected)
          ? [`${path}.${name}: unexpected ${JSON.stringify(actual[name])}`]
          : differences(actual[name], expected[name], tolerance, `${path}.${name}`, name),
    );
  }
  return actual === expected ? [] : [`${path}: ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`];
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
