// Package gliner is a thin Go client for the self-hosted GLiNER2 service's gRPC API
// (gliner.v1.GlinerService and gliner.v1.InferenceHistoryService), over the stubs that
// protoc-gen-go and protoc-gen-go-grpc generate in gen/gliner/v1.
//
//	client, err := gliner.Dial("localhost:8080", gliner.WithAPIKey("KEY"))
//	if err != nil { ... }
//	defer client.Close()
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	text := "Zoë Saldaña met José Núñez in Málaga."
//	res, err := client.Extract(ctx, text, gliner.EntitySchema("person", "location"), gliner.Threshold(0.4))
//	var gerr *gliner.Error
//	if errors.As(err, &gerr) { log.Fatalln(gliner.CodeName(gerr.Code), gerr.Reason, gerr.Field) }
//	for _, m := range res.Result.Entities {
//		fmt.Println(m.Label, text[m.Start:m.End], m.Score) // byte offsets: text[m.Start:m.End] == m.Text
//	}
//
// The server's offsets count Unicode code points; every result here carries byte
// offsets into the Go string instead (Start, End), and the server's in RuneStart, RuneEnd.
package gliner

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	glinerv1 "github.com/gliner2-service/gliner2-service/clients/go/gen/gliner/v1"
)

// DefaultTimeout is the deadline a call gets when its context has none (see WithTimeout).
const DefaultTimeout = 30 * time.Second

// Client calls the service over one gRPC connection. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	gliner  glinerv1.GlinerServiceClient
	history glinerv1.InferenceHistoryServiceClient
	timeout time.Duration
}

type config struct {
	apiKey  string
	tls     *tls.Config
	timeout time.Duration
	dial    []grpc.DialOption
}

// Option configures Dial.
type Option func(*config)

// WithAPIKey sends key as the x-api-key metadata of every call (per-RPC credentials).
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithTLS connects with TLS (nil: the system's roots, server name from the target). Without it the
// connection is plaintext (a local server, or a sidecar that terminates TLS).
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tls = cfg
	}
}

// WithTimeout sets the deadline of calls whose context has none (DefaultTimeout unless set; 0: none).
// A context's own deadline always wins.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithDialOptions adds gRPC dial options (interceptors, keepalive, message sizes, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dial = append(c.dial, opts...) }
}

// APIKeyCredentials are per-RPC credentials that send the service's API key as x-api-key. Dial
// uses them for WithAPIKey; with the raw stubs, pass them as grpc.WithPerRPCCredentials or, for one
// call, grpc.PerRPCCredentials. requireTLS refuses to send the key over a plaintext connection.
func APIKeyCredentials(key string, requireTLS bool) credentials.PerRPCCredentials {
	return apiKey{key: key, secure: requireTLS}
}

type apiKey struct {
	key    string
	secure bool
}

func (a apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"x-api-key": a.key}, nil
}

func (a apiKey) RequireTransportSecurity() bool { return a.secure }

// Dial connects to target ("host:port"; the gRPC port, or Envoy's). Like grpc.Dial, it does not wait
// for the connection: the first call does.
func Dial(target string, opts ...Option) (*Client, error) {
	cfg := config{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&cfg)
	}
	dial := []grpc.DialOption{grpc.WithInsecure()}
	if cfg.tls != nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg.tls))}
	}
	if cfg.apiKey != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(APIKeyCredentials(cfg.apiKey, cfg.tls != nil)))
	}
	conn, err := grpc.Dial(target, append(dial, cfg.dial...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, gliner: glinerv1.NewGlinerServiceClient(conn),
		history: glinerv1.NewInferenceHistoryServiceClient(conn), timeout: cfg.timeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Gliner is the raw GlinerService stub (for the streaming LLM-compatible calls, say). Its errors are
// plain gRPC statuses: FromError decodes them.
func (c *Client) Gliner() glinerv1.GlinerServiceClient { return c.gliner }

// History is the raw InferenceHistoryService stub.
func (c *Client) History() glinerv1.InferenceHistoryServiceClient { return c.history }

func (c *Client) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, has := ctx.Deadline(); has || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// ExtractOption sets an optional field of an Extract or BatchExtract request.
type ExtractOption func(*extractParams)

type extractParams struct {
	threshold                  *float64
	model, project, trainingID string
	privacy                    bool
}

// Threshold is the confidence threshold in [0, 1] (the server's default is 0.5).
func Threshold(t float64) ExtractOption { return func(p *extractParams) { p.threshold = &t } }

// Model picks a registered model or endpoint (the server's default when not given).
func Model(id string) ExtractOption { return func(p *extractParams) { p.model = id } }

// Project records a project id with the inference in the history.
func Project(id string) ExtractOption { return func(p *extractParams) { p.project = id } }

// TrainingJob records a training job id with the inference in the history.
func TrainingJob(id string) ExtractOption { return func(p *extractParams) { p.trainingID = id } }

// PrivacyMode records only metadata (no text, no output) in the history.
func PrivacyMode() ExtractOption { return func(p *extractParams) { p.privacy = true } }

func params(opts []ExtractOption) extractParams {
	var p extractParams
	for _, opt := range opts {
		opt(&p)
	}
	return p
}

// EntitySchema is a schema of entity types by name only.
func EntitySchema(labels ...string) *glinerv1.Schema {
	schema := &glinerv1.Schema{}
	for _, label := range labels {
		schema.Entities = append(schema.Entities, &glinerv1.EntityType{Name: label})
	}
	return schema
}

// Extract runs schema on text. The result's offsets are byte offsets into text.
func (c *Client) Extract(ctx context.Context, text string, schema *glinerv1.Schema, opts ...ExtractOption) (*ExtractResponse, error) {
	p := params(opts)
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.gliner.Extract(ctx, &glinerv1.ExtractRequest{Text: text, Schema: schema, Threshold: p.threshold,
		ModelId: p.model, ProjectId: p.project, TrainingJobId: p.trainingID, PrivacyMode: p.privacy})
	if err != nil {
		return nil, wrap(err)
	}
	return NewExtractResponse(text, res)
}

// BatchExtract runs schema on every text, in one call. Results[i]'s offsets are byte offsets into texts[i].
func (c *Client) BatchExtract(ctx context.Context, texts []string, schema *glinerv1.Schema, opts ...ExtractOption) (*BatchExtractResponse, error) {
	p := params(opts)
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.gliner.BatchExtract(ctx, &glinerv1.BatchExtractRequest{Texts: texts, Schema: schema,
		Threshold: p.threshold, ModelId: p.model, ProjectId: p.project, TrainingJobId: p.trainingID,
		PrivacyMode: p.privacy})
	if err != nil {
		return nil, wrap(err)
	}
	return NewBatchExtractResponse(texts, res)
}

// jsonBody: json.RawMessage, []byte and string go as they are (JSON object key order matters to
// GLiNER2, and Go maps marshal with sorted keys: pass raw JSON or a struct to keep an order).
func jsonBody(body any) (*httpbody.HttpBody, error) {
	var data []byte
	switch b := body.(type) {
	case json.RawMessage:
		data = b
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("gliner: encoding the request body: %w", err)
		}
	}
	if !json.Valid(data) {
		return nil, errors.New("gliner: the request body is not valid JSON")
	}
	return &httpbody.HttpBody{ContentType: "application/json", Data: data}, nil
}

func rawJSON(res *httpbody.HttpBody, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, wrap(err)
	}
	return json.RawMessage(res.GetData()), nil
}

// Gliner2 is POST /gliner-2 over gRPC: the provider's JSON body in, its JSON answer out (offsets as
// the service's JSON gives them: code points).
func (c *Client) Gliner2(ctx context.Context, body any) (json.RawMessage, error) {
	hb, err := jsonBody(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return rawJSON(c.gliner.Gliner2(ctx, &glinerv1.Gliner2Request{Body: hb}))
}

// Run is Fastino's POST /run over gRPC: {"model_id", "input": [{"text", "parameters"}]} in, a JSON array out.
func (c *Client) Run(ctx context.Context, body any) (json.RawMessage, error) {
	hb, err := jsonBody(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return rawJSON(c.gliner.Run(ctx, &glinerv1.RunRequest{Body: hb}))
}

// Inference is Pioneer's POST /inference over gRPC: {"model_id", "text", "schema", ...} in, JSON out.
func (c *Client) Inference(ctx context.Context, body any) (json.RawMessage, error) {
	hb, err := jsonBody(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return rawJSON(c.gliner.Inference(ctx, &glinerv1.InferenceRequest{Body: hb}))
}

// ListModels lists the registered models and /run endpoints (all of them, one page).
func (c *Client) ListModels(ctx context.Context) (*glinerv1.ListModelsResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.gliner.ListModels(ctx, &glinerv1.ListModelsRequest{})
	return res, wrap(err)
}

// ListInferences lists the caller's recorded inferences, newest first (nil: the first page, 20 rows).
func (c *Client) ListInferences(ctx context.Context, req *glinerv1.ListInferencesRequest) (*glinerv1.ListInferencesResponse, error) {
	if req == nil {
		req = &glinerv1.ListInferencesRequest{}
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.history.ListInferences(ctx, req)
	return res, wrap(err)
}

// GetInference fetches one of the caller's inferences (its output's offsets are code points).
func (c *Client) GetInference(ctx context.Context, id string) (*glinerv1.Inference, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.history.GetInference(ctx, &glinerv1.GetInferenceRequest{Id: id})
	return res, wrap(err)
}

// SubmitFeedback marks an inference "correct", or "incorrect" with the output as it should have been
// (corrected: JSON-like values, as structpb.NewStruct takes them; nil for "correct").
func (c *Client) SubmitFeedback(ctx context.Context, id, verdict string, corrected map[string]any) (*glinerv1.SubmitFeedbackResponse, error) {
	req := &glinerv1.SubmitFeedbackRequest{Id: id, Verdict: verdict}
	if corrected != nil {
		s, err := structpb.NewStruct(corrected)
		if err != nil {
			return nil, fmt.Errorf("gliner: corrected output: %w", err)
		}
		req.CorrectedOutput = s
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	res, err := c.history.SubmitFeedback(ctx, req)
	return res, wrap(err)
}

// ExportFeedback is the caller's feedback as gliner2 training JSONL, every streamed page joined.
func (c *Client) ExportFeedback(ctx context.Context) ([]byte, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	stream, err := c.history.ExportFeedback(ctx, &glinerv1.ExportFeedbackRequest{})
	if err != nil {
		return nil, wrap(err)
	}
	var out []byte
	for {
		page, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, wrap(err)
		}
		out = append(out, page.GetData()...)
	}
}

// wrap turns a gRPC status error into *Error (nil stays nil).
func wrap(err error) error {
	if err == nil {
		return nil
	}
	if e := FromError(err); e != nil {
		return e
	}
	return err
}
