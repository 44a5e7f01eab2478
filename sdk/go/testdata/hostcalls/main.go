// Command hostcalls is a test plugin for the SDK's wasm layer: it exports
// describe, prompt, validate and handle, and its handle calls every host
// function. wasm_test.go builds and drives it.
package main

import (
	"errors"
	"fmt"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
	_ "github.com/mdsa-go/mdsa/sdk/go/handle"
)

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name:         "hostcalls",
			Version:      "0.0.1",
			Keywords:     []string{"test"},
			Examples:     []string{"test the host calls"},
			Model:        abi.ModelPref{Tier: abi.TierDomain},
			Generation:   abi.Generation{MaxTokens: 16},
			Capabilities: []string{abi.CapGenerate, abi.CapEmbed, abi.CapCountTokens},
		},
		Prompt: func(env *sdk.Env, req abi.PromptRequest) (abi.PromptResponse, error) {
			if req.Query == "panic" {
				var m map[string]int
				m["boom"]++ // nil map write: a runtime panic
			}
			return env.DefaultPrompt(req)
		},
		Validators: []sdk.Validator{sdk.RequireDisclaimer("TEST DISCLAIMER")},
		Handle: func(env *sdk.Env, req abi.PromptRequest) (abi.HandleResponse, error) {
			switch req.Context["mode"] {
			case "embed":
				r, err := env.Embed(req.Query, "second")
				if err != nil {
					return abi.HandleResponse{}, err
				}
				return abi.HandleResponse{Response: fmt.Sprintf("%s vectors=%d dims=%d", r.Model, len(r.Vectors), len(r.Vectors[0]))}, nil
			case "count":
				n, err := sdk.CountTokens(req.Query) // the package-level form
				if err != nil {
					return abi.HandleResponse{}, err
				}
				return abi.HandleResponse{Response: fmt.Sprintf("count=%d", n)}, nil
			case "panic":
				panic(errors.New("handle exploded"))
			default:
				return env.DefaultHandle(req)
			}
		},
	})
}

func main() {}
