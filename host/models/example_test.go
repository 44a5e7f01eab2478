package models_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/models"
)

// A host wires the registry to llama.cpp, registers the catalog of
// mdsa.toml, and serves each request from a lease.
func ExampleRegistry() {
	cfg, err := config.Load("mdsa.toml")
	if err != nil {
		log.Fatal(err)
	}
	lopts := llamacpp.Options{LibDir: cfg.Resolve(cfg.Engine.LibDir), Threads: cfg.Engine.Threads}
	reg, err := models.New(models.Options{
		Budget:    8 << 30, // bytes of RAM for models
		MaxLoaded: 4,
		KeepAlive: 10 * time.Minute,
		Load:      models.LlamaLoader(lopts),
		Estimate:  models.LlamaEstimator(lopts),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	specs, err := models.SpecsFromConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range specs {
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
