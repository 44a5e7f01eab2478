package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/internal/gguf"
)

func (a *app) modelsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "models", Short: "Manage models"}
	var (
		params int64
		quant  string
		ctxLen int
		asJSON bool
		force  bool
	)
	synth := &cobra.Command{
		Use:   "synth OUT.gguf",
		Short: "Write a synthetic llama model with predictable output (for tests and demos)",
		Long: "Writes a tiny GGUF model that llama.cpp runs like any other. Its weights are chosen, not trained:\n" +
			"greedy decoding answers every chat prompt with the same sentence. Use --params for a larger\n" +
			"model of the same behaviour (for benchmarks: the zero weights still cost real compute).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err == nil && !force {
				return fmt.Errorf("models synth: %s exists; pass --force to overwrite it", args[0])
			}
			if err := os.MkdirAll(filepath.Dir(args[0]), 0o755); err != nil {
				return err
			}
			info, err := gguf.WriteSynth(args[0], gguf.SynthOptions{Params: params, Quant: strings.ToUpper(quant), ContextLength: ctxLen})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, map[string]any{"path": args[0], "params": info.Params, "bytes": info.Bytes,
					"quant": strings.ToUpper(quant), "reply": info.Reply})
			}
			fmt.Fprintf(a.out, "wrote %s: synthetic llama model, %d parameters, %s, %d bytes\n", args[0], info.Params, strings.ToUpper(quant), info.Bytes)
			return nil
		},
	}
	f := synth.Flags()
	f.Int64Var(&params, "params", 0, "approximate parameter count (0 = tiny, about 100 KB)")
	f.StringVar(&quant, "quant", "Q4_0", "tensor type: F32, Q8_0 or Q4_0")
	f.IntVar(&ctxLen, "context", 2048, "context length written into the model")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&force, "force", false, "overwrite OUT.gguf if it exists")
	cmd.AddCommand(synth, a.modelsPullCmd(), a.modelsListCmd(), a.modelsInfoCmd(), a.modelsRmCmd())
	return cmd
}
