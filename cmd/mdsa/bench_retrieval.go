package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/internal/knowledge"
	"github.com/mdsa-go/mdsa/internal/retrievalbench"
)

func (a *app) benchRetrievalCmd() *cobra.Command {
	var (
		set        string
		maxQ       int
		chunkChars int
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "retrieval --set DIR",
		Short: "Measure knowledge-base retrieval: ingest rate, recall@k, MRR, query latency",
		Long: `Measure knowledge-base retrieval on a question/passage set.

DIR holds passages.jsonl ({"id","title","text"} per line) and questions.jsonl ({"question","gold":[ids]}
per line). Every passage is ingested into a fresh knowledge base (BM25), every question searched, and
the rank of its gold passage among the passages found gives recall@1/5/10 and MRR@10.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if set == "" {
				return fmt.Errorf("bench retrieval: give --set DIR")
			}
			ps, qs, err := retrievalbench.Load(set)
			if err != nil {
				return err
			}
			l := knowledge.Limits{MaxDocsPerTenant: len(ps) + 1, MaxChunksPerTenant: 100 * (len(ps) + 1), ChunkChars: chunkChars}
			dir, err := os.MkdirTemp("", "mdsa-retrieval-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			st, err := knowledge.Open(cmd.Context(), filepath.Join(dir, "kb.db"), knowledge.Options{Limits: l})
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := retrievalbench.Run(cmd.Context(), st, ps, qs, maxQ)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, r)
			}
			fmt.Fprintf(a.out, "set:        %s: %d passages (%d chunks), %d questions\n", set, r.Passages, r.Chunks, r.Questions)
			fmt.Fprintf(a.out, "ingest:     %.2f s, %.2f MB/s, %.0f chunks/s\n", r.IngestSeconds, r.IngestMBps, r.ChunksPerSec)
			fmt.Fprintf(a.out, "recall@1:   %.3f\nrecall@5:   %.3f\nrecall@10:  %.3f\nMRR@10:     %.3f\n", r.RecallAt1, r.RecallAt5, r.RecallAt10, r.MRR10)
			fmt.Fprintf(a.out, "query:      p50 %.2f ms, p99 %.2f ms\n", r.QueryP50MS, r.QueryP99MS)
			return nil
		},
	}
	cmd.Flags().StringVar(&set, "set", "", "directory of passages.jsonl and questions.jsonl")
	cmd.Flags().IntVar(&maxQ, "max-questions", 0, "search only the first N questions (0: all)")
	cmd.Flags().IntVar(&chunkChars, "chunk-chars", 1000, "target chunk size in characters")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
