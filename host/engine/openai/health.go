package openai

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// healthPath is the endpoint whose 200 means a backend of kind can serve.
func healthPath(kind string) string {
	switch kind {
	case KindLlamaServer, KindVLLM:
		return "/health" // llama-server answers 503 while it loads the model
	case KindOllama:
		return "/api/version"
	}
	return "/v1/models"
}

// loadMetrics are the Prometheus series whose sum is a backend's load:
// requests waiting and running.
func loadMetrics(kind string) []string {
	switch kind {
	case KindVLLM:
		return []string{"vllm:num_requests_waiting", "vllm:num_requests_running"}
	case KindLlamaServer:
		return []string{"llamacpp:requests_processing", "llamacpp:requests_deferred"}
	}
	return nil
}

// watch checks b every HealthInterval until ctx ends.
func (e *Engine) watch(ctx context.Context, b *backend) {
	defer e.checks.Done()
	t := time.NewTicker(e.opts.HealthInterval)
	defer t.Stop()
	for {
		e.check(ctx, b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check runs one health check of b, and reads its reported load where the
// kind has one (a failure to read the load is not a failed check:
// llama-server serves /metrics only with --metrics).
func (e *Engine) check(ctx context.Context, b *backend) {
	timeout := min(e.opts.HealthInterval*2, e.opts.ConnectTimeout+time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := e.get(ctx, b, healthPath(e.opts.Kind), 4<<10)
	if ctx.Err() != nil && err != nil && context.Cause(ctx) == context.Canceled {
		return // the engine closed
	}
	reported := 0
	if err == nil {
		if names := loadMetrics(e.opts.Kind); names != nil {
			if body, merr := e.get(ctx, b, "/metrics", 1<<20); merr == nil {
				reported = sumMetrics(body, names)
			} else if e.opts.Kind == KindLlamaServer {
				// /metrics needs --metrics; /slots is on by default.
				if body, serr := e.get(ctx, b, "/slots", 1<<20); serr == nil {
					reported = busySlots(body)
				}
			}
		}
		if e.opts.Kind == KindOllama {
			if body, perr := e.get(ctx, b, "/api/ps", 1<<20); perr == nil && !ollamaLoaded(body, e.model) {
				reported = coldPenalty
			}
		}
	}
	was, _ := b.available(time.Now())
	b.checked(err, reported)
	now, _ := b.available(time.Now())
	switch {
	case was && err != nil:
		e.log.Warn("openai backend failed its health check", "model", e.opts.Name, "backend", b.url, "err", err)
	case !was && now:
		e.log.Info("openai backend readmitted", "model", e.opts.Name, "backend", b.url)
	}
}

// get fetches path from b; a status other than 200 is an error.
func (e *Engine) get(ctx context.Context, b *backend, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+path, nil)
	if err != nil {
		return nil, err
	}
	if b.key != "" {
		req.Header.Set("Authorization", "Bearer "+b.key)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %d", path, resp.StatusCode)
	}
	return body, err
}

// sumMetrics adds the values of the Prometheus text-format samples named
// in names (any labels).
func sumMetrics(body []byte, names []string) int {
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		match := false
		for _, n := range names {
			if name == n {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil && v > 0 && v < 1e9 {
			total += v
		}
	}
	return int(total + 0.5)
}

// coldPenalty is the load an Ollama server counts as while the model is
// not loaded there (not in /api/ps): a request would wait for the load,
// so one where it is loaded is preferred.
const coldPenalty = 8

// ollamaLoaded reports whether Ollama's GET /api/ps answer lists model
// ({"models":[{"name":"qwen2.5:7b","model":"qwen2.5:7b",...}]}); a name
// without a tag means ":latest", as Ollama reads it.
func ollamaLoaded(body []byte, model string) bool {
	var ps struct {
		Models []struct {
			Name  string `json:"name"`
			Model string `json:"model"`
		} `json:"models"`
	}
	if json.Unmarshal(body, &ps) != nil {
		return true // unknown: no penalty
	}
	want := model
	if !strings.Contains(want, ":") {
		want += ":latest"
	}
	for _, m := range ps.Models {
		if m.Name == model || m.Name == want || m.Model == model || m.Model == want {
			return true
		}
	}
	return false
}

// busySlots counts the slots of llama-server's GET /slots answer (an array
// of slots, each with "is_processing") that are working.
func busySlots(body []byte) int {
	var slots []struct {
		IsProcessing bool `json:"is_processing"`
	}
	if json.Unmarshal(body, &slots) != nil {
		return 0
	}
	n := 0
	for _, s := range slots {
		if s.IsProcessing {
			n++
		}
	}
	return n
}
