package gliner_test

// Every vector of clients/conformance/vectors.json against the live server, through the raw stubs
// (request: protojson into ExtractRequest/BatchExtractRequest; answer: protojson with proto names,
// compared as decoded JSON values without the volatile fields, scores within the tolerance; errors:
// code name, ErrorInfo reason, BadRequest field), then through the thin client, whose byte offsets
// must slice the Go string to each mention's text.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gliner "github.com/gliner2-service/gliner2-service/clients/go"
	glinerv1 "github.com/gliner2-service/gliner2-service/clients/go/gen/gliner/v1"
)

func dialRaw(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.Dial(serverAddr, grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestConformanceVectors(t *testing.T) {
	if len(vectors.Vectors) == 0 {
		t.Fatal("no vectors in clients/conformance/vectors.json")
	}
	stub := glinerv1.NewGlinerServiceClient(dialRaw(t))
	client := dial(t)
	for _, v := range vectors.Vectors {
		v := v
		t.Run(v.Name, func(t *testing.T) {
			key := vectors.APIKey
			if v.APIKey != nil {
				key = *v.APIKey
			}
			creds := grpc.PerRPCCredentials(gliner.APIKeyCredentials(key, false))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var request, response proto.Message
			var err error
			switch v.Method {
			case "Extract":
				req := &glinerv1.ExtractRequest{}
				if err := protojson.Unmarshal(v.Request, req); err != nil {
					t.Fatalf("request: %v", err)
				}
				request = req
				response, err = stub.Extract(ctx, req, creds)
			case "BatchExtract":
				req := &glinerv1.BatchExtractRequest{}
				if err := protojson.Unmarshal(v.Request, req); err != nil {
					t.Fatalf("request: %v", err)
				}
				request = req
				response, err = stub.BatchExtract(ctx, req, creds)
			default:
				t.Fatalf("unknown method %q", v.Method)
			}
			if v.Error != nil {
				checkError(t, err, v.Error.Code, v.Error.Reason, v.Error.Field)
				return
			}
			if err != nil {
				t.Fatalf("expected an answer, got %v", err)
			}
			got := printed(t, response)
			var want any
			if err := json.Unmarshal(v.Response, &want); err != nil {
				t.Fatal(err)
			}
			if diff := compare("", got, want, vectors.ScoreTolerance); diff != "" {
				t.Fatalf("answer differs from the vector: %s\n got: %s", diff, mustJSON(got))
			}
			// The same request through the thin client: byte offsets that slice the Go string.
			checkThinClient(t, client, request, response)
		})
	}
}

func checkError(t *testing.T, err error, code string, reason, field *string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected %s, got an answer", code)
	}
	e := gliner.FromError(err)
	if e == nil {
		t.Fatalf("not a gRPC status: %v", err)
	}
	want := [3]string{code, deref(reason), deref(field)}
	got := [3]string{gliner.CodeName(e.Code), e.Reason, e.Field}
	if got != want {
		t.Fatalf("error (code, reason, field) = %q, want %q (%v)", got, want, err)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// printed is the response as proto JSON with proto field names, decoded, without the volatile fields.
func printed(t *testing.T, m proto.Message) map[string]any {
	t.Helper()
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	for _, k := range vectors.Volatile {
		delete(out, k)
	}
	return out
}

// compare returns "" when got equals want (JSON values; "score" numbers within tol), else where they differ.
func compare(path string, got, want any, tol float64) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %T, want an object", path, got)
		}
		if gk, wk := keys(g), keys(w); !reflect.DeepEqual(gk, wk) {
			return fmt.Sprintf("%s: keys %v, want %v", path, gk, wk)
		}
		for k := range w {
			if d := compare(path+"."+k, g[k], w[k], tol); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %s, want %d items", path, short(got), len(w))
		}
		for i := range w {
			if d := compare(fmt.Sprintf("%s[%d]", path, i), g[i], w[i], tol); d != "" {
				return d
			}
		}
	case float64:
		g, ok := got.(float64)
		if !ok {
			return fmt.Sprintf("%s: got %v, want %v", path, got, w)
		}
		if strings.HasSuffix(path, ".score") {
			if math.Abs(g-w) > tol {
				return fmt.Sprintf("%s: score %v, want %v ± %v", path, g, w, tol)
			}
		} else if g != w {
			return fmt.Sprintf("%s: %v, want %v", path, g, w)
		}
	default:
		if !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("%s: %s, want %s", path, short(got), short(want))
		}
	}
	return ""
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func short(v any) string {
	s := mustJSON(v)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func checkThinClient(t *testing.T, client *gliner.Client, request, raw proto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch req := request.(type) {
	case *glinerv1.ExtractRequest:
		res, err := client.Extract(ctx, req.Text, req.Schema, options(req.Threshold, req.ModelId)...)
		if err != nil {
			t.Fatalf("thin client: %v", err)
		}
		checkResult(t, req.Text, res.Result, raw.(*glinerv1.ExtractResponse).GetResult())
	case *glinerv1.BatchExtractRequest:
		res, err := client.BatchExtract(ctx, req.Texts, req.Schema, options(req.Threshold, req.ModelId)...)
		if err != nil {
			t.Fatalf("thin client: %v", err)
		}
		for i, text := range req.Texts {
			checkResult(t, text, res.Results[i], raw.(*glinerv1.BatchExtractResponse).GetResults()[i])
		}
	}
}

func options(threshold *float64, model string) []gliner.ExtractOption {
	var opts []gliner.ExtractOption
	if threshold != nil {
		opts = append(opts, gliner.Threshold(*threshold))
	}
	if model != "" {
		opts = append(opts, gliner.Model(model))
	}
	return opts
}

// checkResult: every offset slices text to the mention's text, and the code point offsets and
// counts are the raw answer's.
func checkResult(t *testing.T, text string, got gliner.Result, raw *glinerv1.ExtractionResult) {
	t.Helper()
	if len(got.Entities) != len(raw.GetEntities()) || len(got.Classifications) != len(raw.GetClassifications()) ||
		len(got.Structures) != len(raw.GetStructures()) || len(got.Relations) != len(raw.GetRelations()) {
		t.Fatalf("thin client's result has other counts than the raw answer")
	}
	for i, m := range got.Entities {
		if slice(text, m.Start, m.End) != m.Text {
			t.Errorf("entity %d: text[%d:%d] = %q, want %q", i, m.Start, m.End, slice(text, m.Start, m.End), m.Text)
		}
		if r := raw.GetEntities()[i]; m.RuneStart != int(r.GetStart()) || m.RuneEnd != int(r.GetEnd()) || m.Text != r.GetText() {
			t.Errorf("entity %d: code points [%d,%d), raw [%d,%d)", i, m.RuneStart, m.RuneEnd, r.GetStart(), r.GetEnd())
		}
	}
	for _, span := range spans(got) {
		if span.HasOffsets && slice(text, span.Start, span.End) != span.Text {
			t.Errorf("span: text[%d:%d] = %q, want %q", span.Start, span.End, slice(text, span.Start, span.End), span.Text)
		}
	}
}

// spans: every structure value and relation head and tail.
func spans(r gliner.Result) []gliner.Span {
	var out []gliner.Span
	for _, s := range r.Structures {
		for _, rec := range s.Records {
			for _, f := range rec.Fields {
				out = append(out, f.Values...)
			}
		}
	}
	for _, rel := range r.Relations {
		out = append(out, rel.Head, rel.Tail)
	}
	return out
}

// slice is text[start:end], or a marker when that would panic.
func slice(text string, start, end int) string {
	if start < 0 || end < start || end > len(text) {
		return fmt.Sprintf("<[%d:%d] outside %d bytes>", start, end, len(text))
	}
	return text[start:end]
}
