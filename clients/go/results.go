package gliner

import (
	"fmt"

	glinerv1 "github.com/gliner2-service/gliner2-service/clients/go/gen/gliner/v1"
)

// The service counts offsets in Unicode code points; Go strings index bytes. Every offset below is a
// byte offset into the request's text (text[Start:End] == Text), with the server's code point
// offsets kept in RuneStart and RuneEnd.

// ExtractResponse is Extract's answer.
type ExtractResponse struct {
	Result      Result
	ModelID     string
	LatencyMs   float64 // model time
	QueueMs     float64 // time waiting for the model pass
	InferenceID string  // the inference's id in the history
	Chunks      int     // windows the text was processed in
	// Proto is the message as received (code point offsets).
	Proto *glinerv1.ExtractResponse
}

// BatchExtractResponse is BatchExtract's answer: Results[i] is for texts[i].
type BatchExtractResponse struct {
	Results      []Result
	ModelID      string
	LatencyMs    float64
	QueueMs      float64
	InferenceIDs []string
	Chunks       []int
	Proto        *glinerv1.BatchExtractResponse
}

// Result is everything extracted from one text.
type Result struct {
	Entities        []Entity         // grouped by label in schema order
	Classifications []Classification // one per task, in schema order
	Structures      []Structure      // one per structure, in schema order
	Relations       []Relation       // grouped by relation type in schema order
}

// Entity is one entity mention.
type Entity struct {
	Text  string
	Label string
	// Start and End are byte offsets: text[Start:End] == Text.
	Start, End int
	// RuneStart and RuneEnd are the server's offsets, in code points.
	RuneStart, RuneEnd int
	Score              float64
}

// Span is a value found in the text: a structure field's value, a relation's head or tail.
type Span struct {
	Text string
	// HasOffsets is false for a value that is not a span of the text (a choice), whose offsets are 0.
	HasOffsets         bool
	Start, End         int // bytes
	RuneStart, RuneEnd int // code points
	Score              float64
}

// Classification is one classification task's chosen labels.
type Classification struct {
	Task   string
	Labels []LabelScore
}

// LabelScore is a label with its score.
type LabelScore struct {
	Label string
	Score float64
}

// Structure is every record found for one structure.
type Structure struct {
	Name    string
	Records []Record
}

// Record is one extracted record: field values in schema order.
type Record struct {
	Fields []Field
}

// Field is one field's values in one record (none when nothing was found).
type Field struct {
	Name   string
	Values []Span
}

// Values is the named field's values (nil when the record has no such field).
func (r Record) Values(name string) []Span {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Values
		}
	}
	return nil
}

// Relation is one relation instance.
type Relation struct {
	Relation   string
	Head, Tail Span
}

// NewExtractResponse converts a raw Extract answer for text (what Extract does; for the raw stubs).
func NewExtractResponse(text string, res *glinerv1.ExtractResponse) (*ExtractResponse, error) {
	result, err := NewResult(text, res.GetResult())
	if err != nil {
		return nil, err
	}
	return &ExtractResponse{Result: result, ModelID: res.GetModelId(), LatencyMs: res.GetLatencyMs(),
		QueueMs: res.GetQueueMs(), InferenceID: res.GetInferenceId(), Chunks: int(res.GetChunks()), Proto: res}, nil
}

// NewBatchExtractResponse converts a raw BatchExtract answer for texts.
func NewBatchExtractResponse(texts []string, res *glinerv1.BatchExtractResponse) (*BatchExtractResponse, error) {
	if len(res.GetResults()) != len(texts) {
		return nil, fmt.Errorf("gliner: %d results for %d texts", len(res.GetResults()), len(texts))
	}
	out := &BatchExtractResponse{ModelID: res.GetModelId(), LatencyMs: res.GetLatencyMs(), QueueMs: res.GetQueueMs(),
		InferenceIDs: res.GetInferenceIds(), Proto: res}
	for i, r := range res.GetResults() {
		result, err := NewResult(texts[i], r)
		if err != nil {
			return nil, fmt.Errorf("text %d: %w", i, err)
		}
		out.Results = append(out.Results, result)
	}
	for _, c := range res.GetChunks() {
		out.Chunks = append(out.Chunks, int(c))
	}
	return out, nil
}

// NewResult converts one ExtractionResult of text, code point offsets to byte offsets.
func NewResult(text string, r *glinerv1.ExtractionResult) (Result, error) {
	idx := byteIndex(text)
	var out Result
	for _, m := range r.GetEntities() {
		start, end, err := idx.span(m.GetStart(), m.GetEnd())
		if err != nil {
			return Result{}, fmt.Errorf("gliner: entity %q: %w", m.GetText(), err)
		}
		out.Entities = append(out.Entities, Entity{Text: m.GetText(), Label: m.GetLabel(), Start: start, End: end,
			RuneStart: int(m.GetStart()), RuneEnd: int(m.GetEnd()), Score: m.GetScore()})
	}
	for _, c := range r.GetClassifications() {
		cls := Classification{Task: c.GetTask()}
		for _, l := range c.GetLabels() {
			cls.Labels = append(cls.Labels, LabelScore{Label: l.GetLabel(), Score: l.GetScore()})
		}
		out.Classifications = append(out.Classifications, cls)
	}
	for _, s := range r.GetStructures() {
		st := Structure{Name: s.GetName()}
		for _, rec := range s.GetRecords() {
			var record Record
			for _, f := range rec.GetFields() {
				field := Field{Name: f.GetName()}
				for _, v := range f.GetValues() {
					span, err := idx.convert(v)
					if err != nil {
						return Result{}, fmt.Errorf("gliner: structure %s field %s: %w", s.GetName(), f.GetName(), err)
					}
					field.Values = append(field.Values, span)
				}
				record.Fields = append(record.Fields, field)
			}
			st.Records = append(st.Records, record)
		}
		out.Structures = append(out.Structures, st)
	}
	for _, rel := range r.GetRelations() {
		head, err := idx.convert(rel.GetHead())
		if err != nil {
			return Result{}, fmt.Errorf("gliner: relation %s head: %w", rel.GetRelation(), err)
		}
		tail, err := idx.convert(rel.GetTail())
		if err != nil {
			return Result{}, fmt.Errorf("gliner: relation %s tail: %w", rel.GetRelation(), err)
		}
		out.Relations = append(out.Relations, Relation{Relation: rel.GetRelation(), Head: head, Tail: tail})
	}
	return out, nil
}

// byteOffsets[i] is the byte offset of code point i; the last entry is len(text).
type byteOffsets []int

func byteIndex(text string) byteOffsets {
	idx := make(byteOffsets, 0, len(text)+1)
	for i := range text { // one step per code point (per byte of invalid UTF-8, which gRPC does not carry)
		idx = append(idx, i)
	}
	return append(idx, len(text))
}

func (idx byteOffsets) span(start, end int32) (int, int, error) {
	if start < 0 || end < start || int(end) >= len(idx) {
		return 0, 0, fmt.Errorf("code point offsets [%d, %d) outside a text of %d code points", start, end, len(idx)-1)
	}
	return idx[start], idx[end], nil
}

func (idx byteOffsets) convert(s *glinerv1.Span) (Span, error) {
	out := Span{Text: s.GetText(), Score: s.GetScore()}
	if s == nil || s.Start == nil || s.End == nil {
		return out, nil
	}
	start, end, err := idx.span(s.GetStart(), s.GetEnd())
	if err != nil {
		return Span{}, fmt.Errorf("%q: %w", s.GetText(), err)
	}
	out.HasOffsets, out.Start, out.End, out.RuneStart, out.RuneEnd = true, start, end, int(s.GetStart()), int(s.GetEnd())
	return out, nil
}
