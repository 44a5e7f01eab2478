package host

import (
	"context"
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
	res, err := e.Generate(ctx, ereq, nil)
	if err != nil {
		return abi.GenerateResponse{}, &plugin.CodedError{Code: abi.ErrEngine, Err: err}
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
	v, err := e.Embed(ctx, req.Input)
	if err != nil {
		return abi.EmbedResponse{}, &plugin.CodedError{Code: abi.ErrEngine, Err: err}
	}
	return abi.EmbedResponse{Model: e.Model(), Vectors: v}, nil
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
		return abi.CountTokensResponse{}, &plugin.CodedError{Code: abi.ErrEngine, Err: err}
	}
	return abi.CountTokensResponse{Count: n}, nil
}
