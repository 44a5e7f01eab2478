package enginebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// Bounds on what the benchmark reads from a reference server.
const (
	// MaxResponseBytes bounds a whole answer, JSON or event stream.
	MaxResponseBytes = 8 << 20
	// maxEventLine bounds one line of an event stream.
	maxEventLine = 1 << 20
	// maxErrorBody is how much of a non-2xx answer an error quotes.
	maxErrorBody = 512
	// DefaultRequestTimeout bounds one request when Options do not say.
	DefaultRequestTimeout = 5 * time.Minute
)

// Usage is what an answer says about its tokens.
type Usage struct {
	PromptTokens     int // prompt length
	CachedTokens     int // prompt tokens reused from the server's cache
	CompletionTokens int // generated tokens
}

// OpenAIOptions configure an OpenAITarget.
type OpenAIOptions struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8089 (with or
	// without a trailing /v1); requests go to URL/v1/chat/completions.
	URL string
	// Model is the request's "model" field.
	Model string
	// PID is the server's process id, for its CPU time. 0 means: find the
	// process listening on the URL's port on loopback.
	PID int
	// ProcRoot is where procfs is mounted; empty means /proc.
	ProcRoot string
	// Client sends the requests; nil means a client with Timeout.
	Client *http.Client
	// Timeout bounds one request (0: DefaultRequestTimeout).
	Timeout time.Duration
	// MaxConns is the number of connections kept open between requests
	// (the most concurrent clients); 0 means 16.
	MaxConns int
}

// OpenAITarget measures an OpenAI-compatible server, such as llama.cpp's
// llama-server, through POST /v1/chat/completions.
type OpenAITarget struct {
	endpoint, base, model string
	client                *http.Client
	timeout               time.Duration
	procRoot              string
	pid                   int
	comm                  string
	cpuNote               string // why CPU time is not available; "" when it is
}

// NewOpenAITarget checks opts and, unless opts.PID is set, looks for the
// server's process. Not finding it is not an error: CPUTime then fails and
// CPUNote says why.
func NewOpenAITarget(opts OpenAIOptions) (*OpenAITarget, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("enginebench: reference URL %q: %w", opts.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("enginebench: reference URL %q: want http://HOST:PORT or https://HOST:PORT", opts.URL)
	}
	base := strings.TrimSuffix(strings.TrimSuffix(opts.URL, "/"), "/v1")
	t := &OpenAITarget{
		endpoint: base + "/v1/chat/completions",
		base:     base,
		model:    opts.Model,
		client:   opts.Client,
		timeout:  opts.Timeout,
		procRoot: opts.ProcRoot,
		pid:      opts.PID,
	}
	if t.timeout <= 0 {
		t.timeout = DefaultRequestTimeout
	}
	if t.procRoot == "" {
		t.procRoot = "/proc"
	}
	if t.client == nil {
		conns := opts.MaxConns
		if conns <= 0 {
			conns = 16
		}
		tr := &http.Transport{
			Proxy:                 nil, // the reference is measured directly, never through a proxy
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          2 * conns,
			MaxIdleConnsPerHost:   2 * conns,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: t.timeout,
		}
		t.client = &http.Client{Transport: tr, Timeout: t.timeout}
	}
	t.locate(u)
	return t, nil
}

// locate finds the server's process for CPU time, or records why not.
func (t *OpenAITarget) locate(u *url.URL) {
	if t.pid == 0 {
		host := u.Hostname()
		if !isLoopbackHost(host) {
			t.cpuNote = fmt.Sprintf("the reference %s is not on this machine's loopback (give --against-pid)", host)
			return
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.cpuNote = fmt.Sprintf("bad port %q in %s", port, t.base)
			return
		}
		pid, err := listenerPID(t.procRoot, p)
		if err != nil {
			t.cpuNote = fmt.Sprintf("the reference's process was not found (give --against-pid): %v", err)
			return
		}
		t.pid = pid
	}
	comm, _, err := processStat(t.procRoot, t.pid)
	if err != nil {
		t.cpuNote = fmt.Sprintf("pid %d: %v", t.pid, err)
		t.pid = 0
		return
	}
	t.comm = comm
}

// isLoopbackHost reports whether host (a URL's host name) is this machine
// through the loopback interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Name implements Target.
func (t *OpenAITarget) Name() string { return "reference " + t.base }

// URL is the server's base URL.
func (t *OpenAITarget) URL() string { return t.base }

// PID is the server's process id, 0 when unknown.
func (t *OpenAITarget) PID() int { return t.pid }

// Command is the server process's command name, "" when unknown.
func (t *OpenAITarget) Command() string { return t.comm }

// CPUNote says why the server's CPU time is not available; "" when it is.
func (t *OpenAITarget) CPUNote() string { return t.cpuNote }

// CPUTime implements Target with the server process's utime + stime.
func (t *OpenAITarget) CPUTime() (time.Duration, error) {
	if t.pid == 0 {
		return 0, errors.New(t.cpuNote)
	}
	_, cpu, err := processStat(t.procRoot, t.pid)
	return cpu, err
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Model         string           `json:"model"`
	Messages      []engine.Message `json:"messages"`
	MaxTokens     int              `json:"max_tokens"`
	Temperature   float64          `json:"temperature"`
	Stream        bool             `json:"stream"`
	StreamOptions *streamOptions   `json:"stream_options,omitempty"`
	CachePrompt   bool             `json:"cache_prompt"`
	IgnoreEOS     bool             `json:"ignore_eos,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Do implements Target: greedy, with llama-server's prompt cache asked for,
// and for streamed calls usage in the last event.
func (t *OpenAITarget) Do(ctx context.Context, c Call) (Outcome, error) {
	cr := chatRequest{
		Model: t.model, Messages: c.Messages, MaxTokens: c.MaxTokens,
		Stream: c.Stream, CachePrompt: true, IgnoreEOS: c.IgnoreEOS,
	}
	if c.Stream {
		cr.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	body, err := json.Marshal(cr)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: encoding the request: %w", t.Name(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: %w", t.Name(), err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: %w", t.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return Outcome{}, fmt.Errorf("%s: POST %s: %s: %s", t.Name(), t.endpoint, resp.Status, bytes.TrimSpace(msg))
	}
	body2 := io.LimitReader(resp.Body, MaxResponseBytes)
	var (
		u     Usage
		first time.Duration
	)
	if c.Stream {
		u, err = ParseStream(body2, func() {
			if first == 0 {
				first = max(time.Since(start), 1)
			}
		})
	} else {
		var b []byte
		if b, err = io.ReadAll(body2); err == nil {
			u, err = ParseChat(b)
		}
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: answer of POST %s: %w", t.Name(), t.endpoint, err)
	}
	return Outcome{
		PromptTokens:     u.PromptTokens,
		CachedTokens:     u.CachedTokens,
		CompletionTokens: u.CompletionTokens,
		Latency:          time.Since(start),
		FirstToken:       first,
	}, nil
}

// CloseIdle closes the connections kept between requests.
func (t *OpenAITarget) CloseIdle() { t.client.CloseIdleConnections() }

// chatAnswer is the part of a chat completion, or of one streamed chunk,
// that the benchmark reads.
type chatAnswer struct {
	Choices []struct {
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Content          *string `json:"content"`
			ReasoningContent *string `json:"reasoning_content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        *int `json:"prompt_tokens"`
		CompletionTokens    *int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens *int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	// Timings is llama-server's extension: prompt_n tokens evaluated,
	// cache_n reused, predicted_n generated.
	Timings *struct {
		PromptN    *int `json:"prompt_n"`
		CacheN     *int `json:"cache_n"`
		PredictedN *int `json:"predicted_n"`
	} `json:"timings"`
	Error json.RawMessage `json:"error"`
}

// errorMessage renders an "error" member, an object with a message (OpenAI)
// or a plain string.
func errorMessage(raw json.RawMessage) string {
	var obj struct {
		Message string `json:"message"`
		Code    any    `json:"code"`
		Type    string `json:"type"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s
	}
	if len(raw) > maxErrorBody {
		raw = raw[:maxErrorBody]
	}
	return string(raw)
}

// hasError reports whether raw is an "error" member that is present and not null.
func hasError(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

// usageAcc gathers token counts from one answer or the events of a stream.
// Fields of usage win over llama-server's timings.
type usageAcc struct {
	prompt, cached, completion  *int // from usage
	promptN, cacheN, predictedN *int // from timings
	sawUsage, sawTimings        bool
}

func (a *usageAcc) add(ans *chatAnswer) {
	if u := ans.Usage; u != nil {
		a.sawUsage = true
		a.prompt, a.completion = pick(u.PromptTokens, a.prompt), pick(u.CompletionTokens, a.completion)
		if d := u.PromptTokensDetails; d != nil {
			a.cached = pick(d.CachedTokens, a.cached)
		}
	}
	if tm := ans.Timings; tm != nil {
		a.sawTimings = true
		a.promptN, a.cacheN, a.predictedN = pick(tm.PromptN, a.promptN), pick(tm.CacheN, a.cacheN), pick(tm.PredictedN, a.predictedN)
	}
}

func pick(v, old *int) *int {
	if v != nil {
		return v
	}
	return old
}

// usage combines what was gathered: prompt_tokens (else timings' prompt_n
// + cache_n), cached_tokens (else cache_n, else 0), completion_tokens (else
// predicted_n).
func (a *usageAcc) usage() (Usage, error) {
	if !a.sawUsage && !a.sawTimings {
		return Usage{}, errors.New("no usage in the answer")
	}
	var u Usage
	switch {
	case a.prompt != nil:
		u.PromptTokens = *a.prompt
	case a.promptN != nil:
		u.PromptTokens = *a.promptN
		if a.cacheN != nil {
			u.PromptTokens += *a.cacheN
		}
	default:
		return Usage{}, errors.New("no prompt_tokens in the answer's usage")
	}
	switch {
	case a.cached != nil:
		u.CachedTokens = *a.cached
	case a.cacheN != nil:
		u.CachedTokens = *a.cacheN
	}
	switch {
	case a.completion != nil:
		u.CompletionTokens = *a.completion
	case a.predictedN != nil:
		u.CompletionTokens = *a.predictedN
	default:
		return Usage{}, errors.New("no completion_tokens in the answer's usage")
	}
	if u.PromptTokens < 0 || u.CachedTokens < 0 || u.CompletionTokens < 0 || u.CachedTokens > u.PromptTokens {
		return Usage{}, fmt.Errorf("inconsistent usage: prompt %d, cached %d, completion %d tokens",
			u.PromptTokens, u.CachedTokens, u.CompletionTokens)
	}
	return u, nil
}

// ParseChat reads a (non-streamed) chat completion and returns its usage.
// The input is untrusted: any malformed, error or usage-less answer is an
// error, never a panic.
func ParseChat(body []byte) (Usage, error) {
	var ans chatAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return Usage{}, fmt.Errorf("not a chat completion: %w", err)
	}
	if hasError(ans.Error) {
		return Usage{}, fmt.Errorf("server error: %s", errorMessage(ans.Error))
	}
	if len(ans.Choices) == 0 {
		return Usage{}, errors.New("no choices in the answer")
	}
	var acc usageAcc
	acc.add(&ans)
	return acc.usage()
}

// ParseStream reads a streamed chat completion (server-sent events, "data:"
// lines ending with "data: [DONE]") and returns the usage of its last
// events. onText, when not nil, is called for each event that carries
// generated text, the first call marking the first token. The input is
// untrusted; lines are bounded, and the caller bounds the whole stream.
func ParseStream(r io.Reader, onText func()) (Usage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var (
		acc  usageAcc
		done bool
		data []byte // the data of the event being read (several data: lines join with \n)
	)
	dispatch := func() error {
		if len(data) == 0 {
			return nil
		}
		defer func() { data = data[:0] }()
		if bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")) {
			done = true
			return nil
		}
		var ans chatAnswer
		if err := json.Unmarshal(data, &ans); err != nil {
			return fmt.Errorf("event is not a chat completion chunk: %w", err)
		}
		if hasError(ans.Error) {
			return fmt.Errorf("server error in the stream: %s", errorMessage(ans.Error))
		}
		for _, ch := range ans.Choices {
			if d := ch.Delta; d != nil && ((d.Content != nil && *d.Content != "") || (d.ReasoningContent != nil && *d.ReasoningContent != "")) {
				if onText != nil {
					onText()
				}
				break
			}
		}
		acc.add(&ans)
		return nil
	}
	for !done && sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // end of an event
			if err := dispatch(); err != nil {
				return Usage{}, err
			}
		case line[0] == ':': // a comment (keep-alive)
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "data":
				if len(data) > 0 {
					data = append(data, '\n')
				}
				if len(data)+len(value) > maxEventLine {
					return Usage{}, fmt.Errorf("event longer than %d bytes", maxEventLine)
				}
				data = append(data, value...)
			case "error": // some servers send "error: {...}" lines
				return Usage{}, fmt.Errorf("server error in the stream: %s", errorMessage(bytes.Clone(value)))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Usage{}, fmt.Errorf("reading the event stream: %w", err)
	}
	if !done {
		if err := dispatch(); err != nil { // a last event without its blank line
			return Usage{}, err
		}
	}
	return acc.usage()
}
