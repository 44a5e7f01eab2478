// Command embed shows MDSA used as a library: load the configuration, start
// a host, ask a few questions and print the results.
//
//	go run ./examples/embed -config mdsa.toml -model models/synthetic.gguf "How do I reset my password?"
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
)

func main() {
	cfgPath := flag.String("config", "mdsa.toml", "configuration file")
	model := flag.String("model", "", "GGUF file to use instead of the configured model")
	flag.Parse()
	if err := run(context.Background(), *cfgPath, *model, flag.Args()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfgPath, model string, queries []string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	var opts []host.Option
	if model != "" {
		opts = append(opts, host.WithModelFile(model))
	}
	h, err := host.New(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	defer h.Close()

	if len(queries) == 0 {
		queries = []string{"How do I reset my password?"}
	}
	for _, q := range queries {
		// Stream prints the model's text as it is generated; the returned
		// result carries the validated answer, which the plugin may have
		// revised (a disclaimer appended, say): print what it changed.
		fmt.Printf("> %s\n", q)
		var streamed strings.Builder
		res, err := h.Stream(ctx, host.Request{Query: q}, func(piece string) error {
			streamed.WriteString(piece)
			_, err := os.Stdout.WriteString(piece)
			return err
		})
		if err != nil {
			return fmt.Errorf("%q: %w", q, err)
		}
		switch appended, rewritten := res.Revision(streamed.String()); {
		case res.Status == host.StatusOutOfScope:
			fmt.Print(res.Response)
		case rewritten:
			fmt.Printf("\n[revised by validation:]\n%s", res.Response)
		default:
			fmt.Print(appended)
		}
		fmt.Printf("\n[%s, domain %s, confidence %.2f, %d tokens, %v, validation ok=%v %s]\n\n",
			res.Status, res.Domain, res.Confidence, res.Tokens.Completion, res.Timings.Total.Round(100*time.Microsecond),
			res.Validation.OK, strings.Join(issueCodes(res), ","))
	}
	return nil
}

func issueCodes(res host.Result) []string {
	var codes []string
	for _, is := range res.Validation.Issues {
		codes = append(codes, is.Code)
	}
	return codes
}
