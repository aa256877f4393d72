package gliner_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gliner "github.com/gliner2-service/gliner2-service/clients/go"
	glinerv1 "github.com/gliner2-service/gliner2-service/clients/go/gen/gliner/v1"
)

func dial(t *testing.T, opts ...gliner.Option) *gliner.Client {
	t.Helper()
	client, err := gliner.Dial(serverAddr, append([]gliner.Option{gliner.WithAPIKey(vectors.APIKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Texts where code points, UTF-16 units and bytes all differ: accents, CJK, emoji (astral, flags).
var nonASCII = []string{
	"Zoë Saldaña 🎬 met José Núñez in Málaga 🇪🇸 and Łódź on Friday.",
	"東京で田中さんは 🍣 を食べた、そして Müller と Ørsted に会った。",
	"🙂🙂 Ångström, Dvořák and Šťastný founded Škoda in Plzeň.",
}

func TestNonASCIIOffsets(t *testing.T) {
	client := dial(t)
	schema := gliner.EntitySchema("person", "company", "location")
	schema.Structures = []*glinerv1.Structure{{Name: "meeting", Fields: []*glinerv1.StructureField{
		{Name: "who", Kind: glinerv1.ValueKind_VALUE_KIND_LIST}, {Name: "mood", Choices: []string{"good", "bad"}}}}}
	schema.Relations = []*glinerv1.RelationType{{Name: "works_for"}, {Name: "located_in"}}
	mentions, shifted, spanCount := 0, 0, 0
	for _, text := range nonASCII {
		res, err := client.Extract(callCtx(t), text, schema, gliner.Threshold(0.05))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Result.Entities {
			mentions++
			if m.Start < 0 || m.End > len(text) || m.Start > m.End {
				t.Fatalf("%q: offsets [%d,%d) outside the text", m.Text, m.Start, m.End)
			}
			if slice(text, m.Start, m.End) != m.Text {
				t.Errorf("text[%d:%d] = %q, want %q", m.Start, m.End, slice(text, m.Start, m.End), m.Text)
			}
			if utf8.RuneCountInString(text[:m.Start]) != m.RuneStart || utf8.RuneCountInString(text[:m.End]) != m.RuneEnd {
				t.Errorf("%q: byte offsets [%d,%d) are not code points [%d,%d)", m.Text, m.Start, m.End, m.RuneStart, m.RuneEnd)
			}
			if m.Start != m.RuneStart {
				shifted++
			}
		}
		for _, span := range spans(res.Result) {
			if !span.HasOffsets {
				continue
			}
			spanCount++
			if slice(text, span.Start, span.End) != span.Text {
				t.Errorf("span text[%d:%d] = %q, want %q", span.Start, span.End, slice(text, span.Start, span.End), span.Text)
			}
		}
	}
	// The test means something only if offsets past non-ASCII text were converted.
	if mentions == 0 || shifted == 0 || spanCount == 0 {
		t.Fatalf("too little to check: %d mentions (%d after non-ASCII text), %d spans", mentions, shifted, spanCount)
	}
	t.Logf("%d mentions (%d with byte != code point offsets) and %d spans slice their texts", mentions, shifted, spanCount)

	batch, err := client.BatchExtract(callCtx(t), nonASCII, gliner.EntitySchema("person"), gliner.Threshold(0.05))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range batch.Results {
		for _, m := range r.Entities {
			if slice(nonASCII[i], m.Start, m.End) != m.Text {
				t.Errorf("batch text %d: [%d:%d] = %q, want %q", i, m.Start, m.End, slice(nonASCII[i], m.Start, m.End), m.Text)
			}
		}
	}
}

// The conversion on its own, without the server.
func TestOffsetConversion(t *testing.T) {
	text := "é🇪🇸 Łódź 東京"
	cp := func(n int32) *int32 { return &n }
	raw := &glinerv1.ExtractionResult{
		Entities: []*glinerv1.EntityMention{{Text: "Łódź", Label: "location", Start: 4, End: 8},
			{Text: "東京", Label: "location", Start: 9, End: 11}, {Text: "é", Start: 0, End: 1}},
		Structures: []*glinerv1.StructureResult{{Name: "s", Records: []*glinerv1.StructureRecord{{Fields: []*glinerv1.FieldValue{
			{Name: "where", Values: []*glinerv1.Span{{Text: "東京", Start: cp(9), End: cp(11)}, {Text: "good"}}}}}}}},
		Relations: []*glinerv1.RelationMention{{Relation: "r", Head: &glinerv1.Span{Text: "🇪🇸", Start: cp(1), End: cp(3)},
			Tail: &glinerv1.Span{Text: "Łódź", Start: cp(4), End: cp(8)}}},
	}
	got, err := gliner.NewResult(text, raw)
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Entities[0]; e.Start != 11 || e.End != 18 || slice(text, e.Start, e.End) != "Łódź" {
		t.Errorf("Łódź at [%d,%d)", e.Start, e.End)
	}
	if e := got.Entities[1]; slice(text, e.Start, e.End) != "東京" || e.End != len(text) {
		t.Errorf("東京 at [%d,%d)", e.Start, e.End)
	}
	values := got.Structures[0].Records[0].Values("where")
	if !values[0].HasOffsets || slice(text, values[0].Start, values[0].End) != "東京" || values[1].HasOffsets {
		t.Errorf("structure values %+v", values)
	}
	if rel := got.Relations[0]; slice(text, rel.Head.Start, rel.Head.End) != "🇪🇸" || slice(text, rel.Tail.Start, rel.Tail.End) != "Łódź" {
		t.Errorf("relation %+v", rel)
	}
	raw.Entities[0].End = 12 // past the end (11 code points)
	if _, err := gliner.NewResult(text, raw); err == nil {
		t.Error("an offset past the text's end was accepted")
	}
}

func TestDeadline(t *testing.T) {
	client := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := client.Extract(ctx, strings.Repeat("Tim Cook leads Apple. ", 20), gliner.EntitySchema("person"))
	var gerr *gliner.Error
	if !errors.As(err, &gerr) || gerr.Code != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, context.DeadlineExceeded) is false", err)
	}
	// A client-wide timeout applies when the context has none.
	quick := dial(t, gliner.WithTimeout(time.Millisecond))
	if _, err := quick.Extract(context.Background(), "Tim Cook", gliner.EntitySchema("person")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("WithTimeout(1ms): got %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestErrorDetails(t *testing.T) {
	client := dial(t)
	_, err := client.Extract(callCtx(t), "Tim Cook leads Apple.", gliner.EntitySchema("person"), gliner.Threshold(1.5))
	var gerr *gliner.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("got %T %v, want *gliner.Error", err, err)
	}
	if gerr.Code != codes.InvalidArgument || gerr.Reason != "INVALID_REQUEST" || gerr.Field != "threshold" || gerr.Message == "" {
		t.Fatalf("got %+v", gerr)
	}
	var info *errdetails.ErrorInfo
	for _, d := range gerr.Details {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetReason() != "INVALID_REQUEST" {
		t.Errorf("the details hold no ErrorInfo: %v", gerr.Details)
	}
	if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument {
		t.Errorf("status.FromError(*gliner.Error) = %v, %v", st, ok)
	}
	if !strings.Contains(err.Error(), "INVALID_ARGUMENT") || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("message %q", err.Error())
	}

	_, err = client.Extract(callCtx(t), "Tim Cook", gliner.EntitySchema("person"), gliner.Model("job_missing"))
	if e := gliner.FromError(err); e == nil || e.Code != codes.NotFound || e.Reason != "NOT_FOUND" || e.Field != "" {
		t.Errorf("unknown model: %v", err)
	}

	bad := dial(t, gliner.WithAPIKey("wrong-key")) // the later WithAPIKey wins
	_, err = bad.Extract(callCtx(t), "Tim Cook", gliner.EntitySchema("person"))
	if e := gliner.FromError(err); e == nil || e.Code != codes.Unauthenticated || e.Reason != "UNAUTHORIZED" {
		t.Errorf("wrong key: %v", err)
	}
}

// Details the server sends only under load (RetryInfo), decoded from a status made here.
func TestErrorFromStatus(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "queue full").WithDetails(
		&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "gliner2-service", Metadata: map[string]string{"k": "v"}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "texts", Description: "too many"}}})
	if err != nil {
		t.Fatal(err)
	}
	e := gliner.FromError(st.Err())
	if e.Code != codes.ResourceExhausted || e.Message != "queue full" || e.Reason != "RATE_LIMITED" ||
		e.Domain != "gliner2-service" || e.Metadata["k"] != "v" || e.RetryAfter != 1500*time.Millisecond ||
		e.Field != "texts" || e.FieldDescription != "too many" || len(e.Details) != 3 {
		t.Fatalf("got %+v", e)
	}
	if gliner.FromError(errors.New("plain")) != nil || gliner.FromError(nil) != nil {
		t.Error("FromError of a non-status error is not nil")
	}
	if gliner.CodeName(codes.Canceled) != "CANCELLED" || gliner.CodeName(codes.Unauthenticated) != "UNAUTHENTICATED" {
		t.Error("code names")
	}
}

func TestHistory(t *testing.T) {
	client := dial(t)
	text := "Angela Merkel visited Washington on Tuesday."
	res, err := client.Extract(callCtx(t), text, gliner.EntitySchema("person"), gliner.Threshold(0.3), gliner.Project("go-client-test"))
	if err != nil {
		t.Fatal(err)
	}
	if res.InferenceID == "" {
		t.Fatal("no inference id")
	}
	got, err := client.GetInference(callCtx(t), res.InferenceID)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetId() != res.InferenceID || got.GetText() != text || got.GetProjectId() != "go-client-test" {
		t.Fatalf("GetInference: %v", got)
	}
	fb, err := client.SubmitFeedback(callCtx(t), res.InferenceID, "incorrect",
		map[string]any{"entities": map[string]any{"person": []any{"Angela Merkel"}}})
	if err != nil {
		t.Fatal(err)
	}
	if fb.GetInferenceId() != res.InferenceID || fb.GetFeedback().GetVerdict() != "incorrect" {
		t.Fatalf("SubmitFeedback: %v", fb)
	}
	limit := int32(5)
	page, err := client.ListInferences(callCtx(t), &glinerv1.ListInferencesRequest{Limit: &limit, ProjectId: "go-client-test"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, inf := range page.GetInferences() {
		found = found || (inf.GetId() == res.InferenceID && inf.GetFeedback().GetVerdict() == "incorrect")
	}
	if !found || page.GetTotal() < 1 || page.GetLimit() != 5 {
		t.Fatalf("ListInferences: %v", page)
	}
	if _, err := client.GetInference(callCtx(t), "no-such-inference"); status.Code(err) != codes.NotFound {
		t.Errorf("GetInference of an unknown id: %v", err)
	}
	export, err := client.ExportFeedback(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(export), "Angela Merkel") {
		t.Errorf("ExportFeedback: %q", export)
	}
}

func TestRawJSONAndModels(t *testing.T) {
	client := dial(t)
	// Raw JSON keeps the key order that GLiNER2 cares about.
	body := json.RawMessage(`{"task": "extract_entities", "text": "Zoë Saldaña met José Núñez in Málaga.",
		"schema": ["person", "location"], "threshold": 0.05, "include_spans": true}`)
	out, err := client.Gliner2(callCtx(t), body)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Entities map[string][]struct {
			Text       string
			Start, End int
		}
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatalf("Gliner2 answer %q: %v", out, err)
	}
	if len(answer.Entities["person"]) == 0 {
		t.Fatalf("Gliner2 answer without persons: %s", out)
	}
	if _, err := client.Gliner2(callCtx(t), map[string]any{"text": []string{}}); gliner.FromError(err) == nil {
		t.Errorf("Gliner2 with no text: %v", err)
	}

	models, err := client.ListModels(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defaults := 0
	for _, m := range models.GetData() {
		if m.GetIsDefault() {
			defaults++
		}
	}
	if models.GetObject() != "list" || len(models.GetData()) == 0 || defaults != 1 {
		t.Fatalf("ListModels: %v", models)
	}
}
