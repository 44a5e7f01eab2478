package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// services implements the host functions plugins call (mdsa_generate,
// mdsa_embed, mdsa_count_tokens). The plugin runtime has already checked the
// plugin's capabilities and per-call caps.
type services struct{ h *Host }

// engine leases the model for the calling plugin; the caller releases it.
func (s services) engine(ctx context.Context, call plugin.Call) (*models.Lease, error) {
	var pref abi.ModelPref
	if call.Manifest != nil {
		pref = call.Manifest.Model
	}
	var allowed []string
	if sp, err := s.h.state.Load().space(call.Tenant); err == nil {
		allowed = sp.models
	}
	l, err := s.h.lease(ctx, pref, allowed)
	if err != nil {
		return nil, &plugin.CodedError{Code: abi.ErrUnavailable, Err: fmt.Errorf("no model available: %w", err)}
	}
	return l, nil
}

func (s services) Generate(ctx context.Context, call plugin.Call, req abi.GenerateRequest) (abi.GenerateResponse, error) {
	l, err := s.engine(ctx, call)
	if err != nil {
		return abi.GenerateResponse{}, err
	}
	defer l.Release()
	e := l.Engine()
	// The runtime has filled unset fields from the plugin's manifest and
	// clamped max_tokens to the call's token budget.
	ereq := engine.Request{Messages: toEngineMessages(req.Messages), Prompt: req.Prompt,
		Params: s.h.params(req.Generation)}
	ereq.Params.MaxPromptTokens = call.WorkLeft
	res, err := e.Generate(ctx, ereq, nil)
	if err != nil {
		return abi.GenerateResponse{}, engineError(err)
	}
	if u, ok := ctx.Value(usageKey).(*usage); ok {
		u.in += res.TokensIn
		u.out += res.TokensOut
		u.cached += res.TokensCached
		u.model, u.finish = res.Model, res.FinishReason
	}
	return abi.GenerateResponse{Text: res.Text, Model: res.Model, TokensIn: res.TokensIn,
		TokensOut: res.TokensOut, FinishReason: res.FinishReason}, nil
}

func (s services) Embed(ctx context.Context, call plugin.Call, req abi.EmbedRequest) (abi.EmbedResponse, error) {
	l, err := s.engine(ctx, call)
	if err != nil {
		return abi.EmbedResponse{}, err
	}
	defer l.Release()
	e := l.Engine()
	// The inputs are counted first, so that a call over the request's
	// budget of host work is refused before the engine embeds anything.
	tokens := 0
	for i, in := range req.Input {
		n, err := e.CountTokens(ctx, in)
		if err != nil {
			return abi.EmbedResponse{}, engineError(fmt.Errorf("counting the tokens of input %d: %w", i, err))
		}
		if tokens += n; call.WorkLeft > 0 && tokens > call.WorkLeft {
			return abi.EmbedResponse{}, &plugin.CodedError{Code: abi.ErrBudget,
				Err: fmt.Errorf("the inputs have more than %d tokens, what is left of this call's host work (plugins.max_work_tokens)", call.WorkLeft)}
		}
	}
	v, err := e.Embed(ctx, req.Input)
	if err != nil {
		return abi.EmbedResponse{}, engineError(err)
	}
	if u, ok := ctx.Value(usageKey).(*usage); ok {
		u.embedded += tokens
	}
	return abi.EmbedResponse{Model: e.Model(), Vectors: v, Tokens: tokens}, nil
}

func (s services) CountTokens(ctx context.Context, call plugin.Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error) {
	l, err := s.engine(ctx, call)
	if err != nil {
		return abi.CountTokensResponse{}, err
	}
	defer l.Release()
	e := l.Engine()
	n, err := e.CountTokens(ctx, req.Text)
	if err != nil {
		return abi.CountTokensResponse{}, engineError(err)
	}
	return abi.CountTokensResponse{Count: n}, nil
}

// engineError is the host-call error of an engine error: budget for work
// over the call's budget, bad_request for input the model cannot take,
// engine otherwise.
func engineError(err error) error {
	code := abi.ErrEngine
	switch {
	case errors.Is(err, engine.ErrOverBudget):
		code = abi.ErrBudget
	case errors.Is(err, engine.ErrInvalidInput):
		code = abi.ErrBadRequest
	}
	return &plugin.CodedError{Code: code, Err: err}
}
