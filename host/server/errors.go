package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// OpenAI error types used in the "type" field.
const (
	typeInvalidRequest = "invalid_request_error"
	typePermission     = "permission_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
)

// Refusal reasons, as telemetry's mdsa_refused_total counts them.
const (
	refusedUnauthorized = "unauthorized"
	refusedForbidden    = "forbidden"
	refusedRateLimited  = "rate_limited"
	refusedTooLarge     = "too_large"
	refusedBadRequest   = "bad_request"
)

// codePluginBackedOff is the error code of a call refused by a plugin's
// circuit breaker.
const codePluginBackedOff = "plugin_backed_off"

// statusClientClosed is logged (never sent) for a request whose client went
// away before the answer was ready, as nginx does.
const statusClientClosed = 499

// apiError is an error answer in OpenAI's format, plus what the server
// needs to account for it.
type apiError struct {
	Status  int    // HTTP status
	Type    string // OpenAI error type
	Code    string // OpenAI error code
	Param   string // the request field at fault, if any
	Message string // what is wrong, for the client
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// at least 1).
	RetryAfter time.Duration
	// Refused, when set, is the reason counted in mdsa_refused_total.
	Refused string
	// Cause is the underlying error, logged, never sent.
	Cause error
}

func (e *apiError) Error() string { return e.Message }

func (e *apiError) Unwrap() error { return e.Cause }

// body is the JSON document sent for e.
func (e *apiError) body() errorBody {
	b := errorBody{}
	b.Error.Message, b.Error.Type, b.Error.Code = e.Message, e.Type, e.Code
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	return b
}

// errorBody is OpenAI's error document.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// badRequest is a 400 for the request field param.
func badRequest(param, code, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: code, Param: param,
		Message: fmt.Sprintf(format, args...), Refused: refusedBadRequest}
}

func forbidden(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: typePermission, Code: "permission_denied", Param: param,
		Message: fmt.Sprintf(format, args...), Refused: refusedForbidden}
}

func modelNotFound(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "model_not_found", Param: param,
		Message: fmt.Sprintf(format, args...), Refused: refusedBadRequest}
}

func unauthorized(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
		Message: msg, Refused: refusedUnauthorized}
}

func internalError(reqID string, cause error) *apiError {
	return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
		Message: "internal error; the server log has the details under request id " + reqID, Cause: cause}
}

// limitError maps a tenant's refusal to 429 (400 for max_tokens, which no
// retry can fix).
func limitError(le *tenant.LimitError, param string) *apiError {
	if le.Limit == tenant.LimitMaxTokens {
		if param == "" {
			param = "max_tokens"
		}
		return badRequest(param, "max_tokens_exceeded", "%s is over this API key's limit of %s tokens per request",
			param, strconv.FormatFloat(le.Value, 'f', -1, 64))
	}
	var what string
	switch le.Limit {
	case tenant.LimitRequestsPerSecond:
		what = "requests per second"
	case tenant.LimitConcurrent:
		what = "requests in flight at once"
	case tenant.LimitTokensPerMinute:
		what = "tokens per minute"
	default:
		what = le.Limit
	}
	retry := retrySeconds(le.RetryAfter)
	return &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "rate_limit_exceeded",
		Message: fmt.Sprintf("rate limit exceeded: this API key allows %s %s (%s); retry after %d s",
			strconv.FormatFloat(le.Value, 'f', -1, 64), what, le.Limit, retry),
		RetryAfter: time.Duration(retry) * time.Second, Refused: refusedRateLimited}
}

// retrySeconds rounds d up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	s := math.Ceil(d.Seconds())
	switch {
	case s < 1 || math.IsNaN(s):
		return 1
	case s > 86400:
		return 86400
	}
	return int64(s)
}

// hostError maps an error of the host (Process, Stream, Embed) to the
// answer; reqID goes into messages that point at the log.
func hostError(reqID string, err error) *apiError {
	var ce *plugin.CallError
	var le *tenant.LimitError
	var cle *engine.ContextLengthError
	var clash *host.ToolClashError
	switch {
	case errors.As(err, &le):
		return limitError(le, "")
	case errors.As(err, &clash):
		return structuredError("", clash.Err)
	case errors.Is(err, host.ErrConstrainedUnsupported):
		return badRequest("model", "model_not_supported", "this model runs on servers that cannot enforce the request's response_format or tools: the embedded engine and llama-server and vLLM backends take both, Ollama backends response formats only")
	case errors.Is(err, host.ErrToolsUnsupported):
		return badRequest("tools", "unsupported_value", "tools: %v", err)
	case errors.As(err, &cle):
		param := "messages"
		if strings.HasPrefix(cle.What, "embedding input") {
			param = "input"
		}
		if cle.Tokens <= 0 || cle.Context <= 0 {
			return badRequest(param, "context_length_exceeded",
				"the %s is longer than this model's context: shorten it", cle.What)
		}
		return badRequest(param, "context_length_exceeded",
			"this model's context holds %d tokens, but the %s has %s: shorten it, or raise engine.context_size in the server's configuration",
			cle.Context, cle.What, cle.Count())
	case errors.Is(err, engine.ErrInvalidInput):
		return badRequest("", "invalid_input", "the model cannot take this input: %s", clip(err.Error(), maxErrorDetail))
	case errors.Is(err, context.Canceled):
		return &apiError{Status: statusClientClosed, Type: typeInvalidRequest, Code: "client_closed",
			Message: "the client closed the request", Cause: err}
	case errors.Is(err, host.ErrClosed), errors.Is(err, engine.ErrClosed), errors.Is(err, models.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "shutting_down",
			Message: "the server is shutting down; retry on another instance", Cause: err}
	case errors.Is(err, host.ErrModelNotAllowed):
		return forbidden("model", "this API key may not use that model")
	case errors.Is(err, models.ErrUnknownModel):
		return modelNotFound("model", "no such model in the catalog")
	case errors.Is(err, engine.ErrNotSupported):
		return badRequest("model", "model_not_supported", "the model cannot do that (for example it makes no embeddings)")
	case errors.Is(err, engine.ErrUnavailable):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "backend_unavailable",
			Message:    "no inference server can take this request now; retry later (request id " + reqID + ")",
			RetryAfter: time.Second, Cause: err}
	case errors.Is(err, models.ErrNoModel), errors.Is(err, models.ErrOverBudget), errors.Is(err, models.ErrOutOfMemory):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "model_unavailable",
			Message: "no model is available to serve this request now; request id " + reqID, Cause: err}
	case errors.As(err, &ce) && errors.Is(ce.Kind, plugin.ErrBackedOff):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codePluginBackedOff,
			Message:    fmt.Sprintf("the domain plugin %q failed repeatedly and is backed off for a moment; retry later (request id %s)", ce.Plugin, reqID),
			RetryAfter: time.Second, Cause: err}
	case errors.As(err, &ce) && errors.Is(ce.Kind, plugin.ErrMemoryBudget):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "plugin_memory_exhausted",
			Message:    fmt.Sprintf("the domain plugins of this server hold all the memory they may use, so %q cannot take this request now; retry later (request id %s)", ce.Plugin, reqID),
			RetryAfter: time.Second, Cause: err}
	case errors.As(err, &ce):
		// A domain plugin failed (timed out, trapped, returned garbage):
		// only that request fails. Its name and the kind of failure are
		// safe to tell; the details go to the log.
		kind := "failed"
		if ce.Kind != nil {
			kind = ce.Kind.Error()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			kind = "timed out"
		}
		return &apiError{Status: http.StatusBadGateway, Type: typeServer, Code: "plugin_error",
			Message: fmt.Sprintf("the domain plugin %q %s in %s; request id %s", ce.Plugin, kind, ce.Export, reqID), Cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeServer, Code: "timeout",
			Message: "the request took too long; request id " + reqID, Cause: err}
	}
	return internalError(reqID, err)
}

// maxErrorDetail bounds the part of an error message that quotes something
// a client or a plugin supplied.
const maxErrorDetail = 512
