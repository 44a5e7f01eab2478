package router

import (
	"context"
	"slices"
)

// Explanation says why a query was routed where it was: the Decision, with
// the evidence behind it and the parts of each alternative's fused score.
type Explanation struct {
	// Decision is the one Route makes for the query.
	Decision Decision `json:"decision"`
	// Reason names the rule that settled the Decision: ReasonRouted,
	// ReasonNoEvidence, ReasonBackground, ReasonBelowThreshold or
	// ReasonNoDomains. Empty when the router could not explain itself.
	Reason string `json:"reason,omitempty"`
	// Words are the query's words, lowercased, as the router read them.
	Words []string `json:"words"`
	// Stems are the stemmed content words (stop words dropped) that
	// keywords are matched against.
	Stems []string `json:"stems"`
	// Coverage is the share of the query's distinct features the router
	// saw in training, in [0, 1].
	Coverage float64 `json:"coverage"`
	// Evidence says whether the query had any evidence at all: a known
	// feature or a keyword. Without it the query is out of scope.
	Evidence bool `json:"evidence"`
	// Model is how the Model terms were scored: "linear" or "centroid".
	Model string `json:"model,omitempty"`
	// Embedded says whether the query was embedded, so that the Embedding
	// terms apply (an embedder is set and embedding the query worked).
	Embedded bool `json:"embedded"`
	// Threshold is the confidence threshold of the best domain
	// (Decision.Alternatives[0]).
	Threshold float64 `json:"threshold"`
	// Background is the background class's score; nil when the router has
	// no background class.
	Background *BackgroundScore `json:"background,omitempty"`
	// Alternatives are the score terms of Decision.Alternatives, in the
	// same order.
	Alternatives []Terms `json:"alternatives"`
}

// BackgroundScore is how the background class ("none of these") scored.
type BackgroundScore struct {
	// Score is its fused score.
	Score float64 `json:"score"`
	// Won says whether it beat the best domain by the background margin,
	// which puts the query out of scope whatever the confidence.
	Won bool `json:"won"`
}

// Terms are the parts of one domain's fused score. Model, Nearest, Keyword
// and Embedding add up to Total.
type Terms struct {
	// Domain is the domain scored.
	Domain string `json:"domain"`
	// Model is the linear model's logit for the domain or, when the
	// router scores centroids, the weighted cosine to its centroid.
	Model float64 `json:"model"`
	// Nearest is the nearest-example term: a fixed weight times
	// Similarity.
	Nearest float64 `json:"nearest"`
	// Similarity is the cosine similarity of the query to NearestText.
	Similarity float64 `json:"similarity"`
	// NearestText is the domain's training text most similar to the query
	// ("" when none shares a feature with it).
	NearestText string `json:"nearest_text,omitempty"`
	// NearestIsKeyword says NearestText is one of the domain's keywords
	// (each trains as a one-line example) rather than an example.
	NearestIsKeyword bool `json:"nearest_is_keyword,omitempty"`
	// Keyword is the keyword term, from the keywords the query matched.
	Keyword float64 `json:"keyword"`
	// Keywords are the matched keywords, as the plugin wrote them.
	Keywords []string `json:"keywords,omitempty"`
	// Embedding is the embedding term (0 unless Explanation.Embedded).
	Embedding float64 `json:"embedding"`
	// Total is the fused score the domain was ranked by.
	Total float64 `json:"total"`
}

// Explain makes the Decision Route makes for query (the same scoring, and
// the same embedding call when there is an embedder) and says why. It is
// slower than Route: meant for consoles and debugging, not for every
// request.
func (h *Hybrid) Explain(ctx context.Context, query string) Explanation {
	s := new(scratch)
	h.prepare(ctx, query, s)
	var t trace
	d := h.decide(s, &t)
	e := Explanation{Decision: d, Reason: t.reason, Words: s.q.words, Stems: s.q.stems,
		Coverage: t.cov, Evidence: t.evidence, Model: h.info.Model, Embedded: s.q.emb != nil,
		Threshold: t.threshold, Alternatives: make([]Terms, 0, len(d.Alternatives))}
	if e.Words == nil {
		e.Words = []string{}
	}
	if e.Stems == nil {
		e.Stems = []string{}
	}
	if k := len(h.names); len(s.fused) > k {
		e.Background = &BackgroundScore{Score: s.fused[k], Won: t.bgWins}
	}
	for _, a := range d.Alternatives {
		cl, ok := slices.BinarySearch(h.names, a.Domain)
		if !ok {
			continue // cannot happen: alternatives are domains
		}
		ct := t.terms[cl]
		tr := Terms{Domain: a.Domain, Model: ct.model, Nearest: ct.nearest, Similarity: float64(ct.sim),
			Keyword: ct.keyword, Keywords: ct.keywords, Embedding: ct.embedding, Total: s.fused[cl]}
		if ct.doc >= 0 {
			tr.NearestText = h.texts[ct.doc]
			tr.NearestIsKeyword = ct.doc < h.exStart[cl]
		}
		e.Alternatives = append(e.Alternatives, tr)
	}
	return e
}
