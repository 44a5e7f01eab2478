// Package retrievalbench measures knowledge-base retrieval on a public
// question/passage set: every passage ingested as a document, every
// question searched, and the rank of its gold passage among the documents
// found (recall@k, MRR@10), with the ingest rate and the query latency.
//
// The set is two JSON Lines files in one directory: passages.jsonl
// ({"id", "title", "text"} per line) and questions.jsonl ({"question",
// "gold": [passage ids]} per line), as made from SQuAD v1.1 dev (2,067
// paragraphs, 10,570 questions; each question's gold is its paragraph).
package retrievalbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mdsa-go/mdsa/internal/knowledge"
	"github.com/mdsa-go/mdsa/internal/stats"
)

// Passage is one passage of the set.
type Passage struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Question is one question and the ids of the passages that answer it.
type Question struct {
	Question string   `json:"question"`
	Gold     []string `json:"gold"`
}

// Report is what Run measured.
type Report struct {
	Passages  int `json:"passages"`
	Chunks    int `json:"chunks"`
	Questions int `json:"questions"`
	// Ingest: the whole set's ingestion.
	IngestSeconds float64 `json:"ingest_seconds"`
	IngestMBps    float64 `json:"ingest_mb_per_s"`
	ChunksPerSec  float64 `json:"chunks_per_s"`
	// Quality: the share of questions whose gold passage is among the first
	// k passages found, and the mean reciprocal rank within the first 10.
	RecallAt1  float64 `json:"recall_at_1"`
	RecallAt5  float64 `json:"recall_at_5"`
	RecallAt10 float64 `json:"recall_at_10"`
	MRR10      float64 `json:"mrr_at_10"`
	// Latency of one search (milliseconds).
	QueryP50MS float64 `json:"query_p50_ms"`
	QueryP99MS float64 `json:"query_p99_ms"`
}

// Load reads a set from dir.
func Load(dir string) ([]Passage, []Question, error) {
	ps, err := readLines[Passage](filepath.Join(dir, "passages.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	qs, err := readLines[Question](filepath.Join(dir, "questions.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	if len(ps) == 0 || len(qs) == 0 {
		return nil, nil, fmt.Errorf("retrievalbench: %s: no passages or no questions", dir)
	}
	return ps, qs, nil
}

func readLines[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("retrievalbench: %w", err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("retrievalbench: %s:%d: %w", path, n, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("retrievalbench: %s: %w", path, err)
	}
	return out, nil
}

// Tenant and KB are where Run puts the set.
const (
	Tenant = "bench"
	KB     = "eval"
)

// Run ingests ps into st (tenant Tenant, knowledge base KB; the passage id
// as each document's source) and searches every question (at most
// maxQuestions; 0: all), scoring the documents in the order their best
// chunk was found.
func Run(ctx context.Context, st knowledge.Store, ps []Passage, qs []Question, maxQuestions int) (Report, error) {
	r := Report{Passages: len(ps)}
	start := time.Now()
	var bytes int
	for _, p := range ps {
		d, err := st.Add(ctx, Tenant, KB, knowledge.Input{Title: p.Title, Source: p.ID, Type: knowledge.TypeText, Body: []byte(p.Text)})
		if err != nil {
			return r, fmt.Errorf("retrievalbench: passage %s: %w", p.ID, err)
		}
		bytes += len(p.Text)
		r.Chunks += d.Chunks
	}
	el := time.Since(start).Seconds()
	r.IngestSeconds, r.IngestMBps, r.ChunksPerSec = el, float64(bytes)/1e6/el, float64(r.Chunks)/el

	if maxQuestions > 0 && len(qs) > maxQuestions {
		qs = qs[:maxQuestions]
	}
	var lat []time.Duration
	var at1, at5, at10 int
	var rr float64
	for _, q := range qs {
		t := time.Now()
		hits, err := st.Search(ctx, Tenant, KB, q.Question, 20)
		lat = append(lat, time.Since(t))
		if errors.Is(err, knowledge.ErrInvalid) {
			r.Questions++ // nothing searchable: a miss
			continue
		}
		if err != nil {
			return r, fmt.Errorf("retrievalbench: question %q: %w", q.Question, err)
		}
		r.Questions++
		var seen []string
		for _, h := range hits {
			if !slices.Contains(seen, h.Source) {
				seen = append(seen, h.Source)
			}
		}
		rank := 0
		for i, id := range seen {
			if slices.Contains(q.Gold, id) {
				rank = i + 1
				break
			}
		}
		if rank == 1 {
			at1++
		}
		if rank >= 1 && rank <= 5 {
			at5++
		}
		if rank >= 1 && rank <= 10 {
			at10++
			rr += 1 / float64(rank)
		}
	}
	n := float64(max(r.Questions, 1))
	r.RecallAt1, r.RecallAt5, r.RecallAt10, r.MRR10 = float64(at1)/n, float64(at5)/n, float64(at10)/n, rr/n
	r.QueryP50MS = float64(stats.Percentile(lat, 0.5).Microseconds()) / 1000
	r.QueryP99MS = float64(stats.Percentile(lat, 0.99).Microseconds()) / 1000
	return r, nil
}
