package models_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/models"
)

// The registry loads models with any engine: here llama.cpp, each model
// with its spec's name and a 4,096-token context, the memory estimated from
// the GGUF header for the same context.
func ExampleRegistry() {
	lopts := llamacpp.Options{ContextSize: 4096, Threads: 2}
	reg, err := models.New(models.Options{
		Budget:    8 << 30, // bytes of RAM for models
		MaxLoaded: 4,
		KeepAlive: 10 * time.Minute,
		Load: func(ctx context.Context, s models.Spec) (engine.Engine, error) {
			o := lopts
			o.Name = s.Name
			e, err := llamacpp.Open(ctx, s.Path, o)
			if err != nil {
				return nil, models.OutOfMemory(err) // evict and retry when memory ran out
			}
			return e, nil
		},
		Estimate: models.FileEstimator(models.EstimateOptions{ContextSize: lopts.ContextSize}),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	for _, s := range []models.Spec{
		{Name: "qwen2.5-0.5b", Tier: models.TierDomain, Path: "models/qwen2.5-0.5b-instruct-q4_k_m.gguf"},
		{Name: "bge-small", Tier: models.TierRouter, Path: "models/bge-small-en-v1.5-f16.gguf"},
	} {
		if err := reg.Register(s); err != nil {
			log.Fatal(err)
		}
	}

	// A plugin asked for a domain model, preferably a Qwen2.5.
	name, err := reg.Pick(models.TierDomain, []string{"qwen2.5"})
	if err != nil {
		log.Fatal(err)
	}
	lease, err := reg.Get(context.Background(), name)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release()
	res, err := lease.Engine().Generate(context.Background(), engine.Request{
		Messages: []engine.Message{{Role: "user", Content: "What is a bond?"}},
		Params:   engine.Params{MaxTokens: 64},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)
}

// ReadMetadata and Estimate tell what a model file is and what it will cost.
func ExampleEstimate() {
	meta, err := models.ReadMetadata("models/qwen2.5-0.5b-instruct-q4_k_m.gguf")
	if err != nil {
		log.Fatal(err)
	}
	est := models.Estimate(meta, models.EstimateOptions{ContextSize: 4096, Parallel: 2})
	fmt.Printf("%s %s %s, %d parameters: %s\n", meta.Name, meta.Architecture, meta.FileType, meta.Params, est)
}
