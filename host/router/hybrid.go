package router

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fusion weights, in logit units of the linear model. They were chosen on
// the CLINC150 validation split (never its test split) and are the same for
// every router; calibration adapts the confidence to each domain set.
const (
	wKNN  = 5.0  // best cosine similarity to one of the domain's examples
	wKW   = 2.0  // keyword evidence, 0 .. 1
	wEmb  = 5.0  // best embedding cosine to one of the domain's examples
	wCov  = 3.0  // share of the query's features the router has seen
	wCent = 10.0 // centroid cosine, when there is no linear model
)

// Training and cost bounds.
const (
	// maxLinearCells caps the dense weight table (rows x domains) of the
	// linear model at 64 MB; past it the router scores nearest centroids.
	maxLinearCells = 16 << 20
	// maxEmbedExamples caps the embedded examples kept per domain.
	maxEmbedExamples = 256
	// postingShare: rows shared by more than this share of the examples are
	// skipped by the nearest-example stage (minPostingLimit at least).
	postingShare    = 10
	minPostingLimit = 64
)

// oosPrior is the share of out-of-scope queries that the held-out
// calibration assumes: a confidence of p means p of the queries routed with
// it are right when about this share of the traffic belongs to no domain.
const oosPrior = 0.2

var trainDefaults = trainOpts{epochs: 10, lr: 0.5, l2: 1e-6}

// example is one training utterance (or keyword) of class class.
type example struct {
	class  int
	hashes []uint64
	emb    []float32
}

// keywordSet is the keyword evidence of one domain.
type keywordSet struct {
	words      map[string]string // single stemmed words, to the keyword as written
	phrases    [][]string        // stemmed multi-word keywords
	phraseText []string          // each phrase's keyword as written
}

// core is everything that scores a query, trained on some examples of some
// classes. The router has one for routing; calibration trains another on
// part of the data.
type core struct {
	k        int
	active   []bool
	voc      *vocab
	lin      *linear     // nil: score centroids instead
	cent     *postings   // class centroids, when lin == nil
	ex       *postings   // example vectors
	exClass  []int32     // class of each example document
	exEmb    [][]float32 // per class embedded examples, packed; nil without an embedder
	limit    int
	kw       []keywordSet
	features int
}

// buildCore trains a core on exs; bg is the background class, or -1.
func buildCore(exs []example, kw []keywordSet, active []bool, k int, o Options, bg int) *core {
	docs := make([][]uint64, len(exs))
	for i, e := range exs {
		docs[i] = slices.Clone(e.hashes)
	}
	c := &core{k: k, active: active, voc: buildVocab(docs), kw: kw}
	c.features = len(c.voc.idf)
	vecs := make([]sparseVec, len(exs))
	ys := make([]int, len(exs))
	c.exClass = make([]int32, len(exs))
	for i, d := range docs {
		vecs[i], _, _ = c.voc.vector(d, sparseVec{})
		ys[i] = exs[i].class
		c.exClass[i] = int32(exs[i].class)
	}
	c.ex = newPostings(c.features, vecs)
	c.limit = max(minPostingLimit, len(exs)/postingShare)
	if c.features*k <= o.linearCells {
		to := trainDefaults
		to.seed = o.Seed
		c.lin = trainLinear(vecs, ys, k, c.features, to, classWeights(ys, k, bg))
	} else {
		cent := make([][]float32, k)
		for i, v := range vecs {
			if cent[ys[i]] == nil {
				cent[ys[i]] = make([]float32, c.features)
			}
			for j, r := range v.idx {
				cent[ys[i]][r] += v.val[j]
			}
		}
		cvecs := make([]sparseVec, k)
		for ci, dense := range cent {
			l2norm(dense)
			for r, x := range dense {
				if x != 0 {
					cvecs[ci].idx = append(cvecs[ci].idx, int32(r))
					cvecs[ci].val = append(cvecs[ci].val, x)
				}
			}
		}
		c.cent = newPostings(c.features, cvecs)
	}
	// Embedded examples, packed per class (at most maxEmbedExamples each).
	var embs [][][]float32
	for _, e := range exs {
		if e.emb == nil {
			continue
		}
		if embs == nil {
			embs = make([][][]float32, k)
		}
		if len(embs[e.class]) < maxEmbedExamples {
			embs[e.class] = append(embs[e.class], e.emb)
		}
	}
	if embs != nil {
		for _, es := range embs {
			c.exEmb = append(c.exEmb, flatten(es))
		}
	}
	return c
}

// bgClass is the background's class index when there is one, else -1.
func bgClass(classes, domains int) int {
	if classes > domains {
		return domains
	}
	return -1
}

// classWeights gives the background class the total weight of an average
// domain, so that hundreds of background utterances don't outvote a
// domain's few dozen examples. Nil when there is no background.
func classWeights(ys []int, k, bg int) []float64 {
	if bg < 0 {
		return nil
	}
	n := make([]int, k)
	for _, y := range ys {
		n[y]++
	}
	dom, domN := 0, 0
	for c, m := range n {
		if c != bg && m > 0 {
			dom += m
			domN++
		}
	}
	w := make([]float64, k)
	for c := range w {
		w[c] = 1
	}
	if domN > 0 && n[bg] > 0 {
		w[bg] = min(1, float64(dom)/float64(domN)/float64(n[bg]))
	}
	return w
}

func flatten(vs [][]float32) []float32 {
	var out []float32
	for _, v := range vs {
		out = append(out, v...)
	}
	return out
}

// query is a query prepared once, whatever core scores it.
type query struct {
	words  []string
	stems  []string
	hashes []uint64
	emb    []float32
}

// scratch holds per-query buffers, pooled.
type scratch struct {
	q       query
	hashes  []uint64
	vec     sparseVec
	logits  []float64
	fused   []float64
	acc     []float32
	touched []int32
	best    []float32
}

// trace receives what Explain shows of one scoring: score and decide fill
// it when it is not nil (Route passes nil and pays nothing for it).
type trace struct {
	terms     []classTerms // per class
	cov       float64
	evidence  bool
	bgWins    bool
	threshold float64
	reason    string
}

// classTerms are the parts of one class's fused score, as score added them.
type classTerms struct {
	model, nearest, keyword, embedding float64
	sim                                float32
	doc                                int32 // nearest example document, -1 if none
	keywords                           []string
	embedded                           bool
}

// keywords is where score lists the keywords class cl matched, nil when
// not tracing.
func (t *trace) keywords(cl int) *[]string {
	if t == nil {
		return nil
	}
	return &t.terms[cl].keywords
}

// score fills s.fused with the fused score of every class (-Inf for classes
// the core was not trained on) and returns the query's feature coverage and
// whether it had any evidence at all. With t set it also records the terms
// of every class's score.
func (c *core) score(q *query, s *scratch, t *trace) (cov float64, evidence bool) {
	k := c.k
	s.hashes = append(s.hashes[:0], q.hashes...)
	vec, known, distinct := c.voc.vector(s.hashes, s.vec)
	s.vec = vec
	if distinct > 0 {
		cov = float64(known) / float64(distinct)
	}
	s.fused = grow(s.fused, k)
	s.logits = grow(s.logits, k)
	if c.lin != nil {
		c.lin.scores(vec, s.logits, 1)
	} else {
		clear(s.logits)
		s.acc = growF(s.acc, k)
		s.touched = c.cent.dots(vec, math.MaxInt, s.acc, s.touched[:0])
		for _, d := range s.touched {
			s.logits[d] = wCent * float64(s.acc[d])
			s.acc[d] = 0
		}
	}
	if t != nil {
		t.terms = make([]classTerms, k)
		for cl := range t.terms {
			t.terms[cl].doc = -1
		}
	}
	// Nearest example per class.
	s.acc = growF(s.acc, len(c.exClass))
	s.best = growF(s.best, k)
	clear(s.best)
	s.touched = c.ex.dots(vec, c.limit, s.acc, s.touched[:0])
	for _, d := range s.touched {
		cl := c.exClass[d]
		if t != nil && s.acc[d] > s.best[cl] {
			t.terms[cl].doc = d
		}
		s.best[cl] = max(s.best[cl], s.acc[d])
		s.acc[d] = 0
	}
	evidence = known > 0
	for cl := 0; cl < k; cl++ {
		if !c.active[cl] {
			s.fused[cl] = math.Inf(-1)
			continue
		}
		model, nearest := s.logits[cl], wKNN*float64(s.best[cl])
		f := model + nearest
		var kwTerm, embTerm float64
		if hits := c.kw[cl].hits(q.stems, t.keywords(cl)); hits > 0 {
			kwTerm = wKW * (1 - 1/(1+float64(hits)))
			f += kwTerm
			evidence = true
		}
		embedded := q.emb != nil && len(c.exEmb) > cl
		if embedded {
			embTerm = wEmb * float64(maxCos(q.emb, c.exEmb[cl]))
			f += embTerm
		}
		s.fused[cl] = f
		if t != nil {
			ct := &t.terms[cl]
			ct.model, ct.nearest, ct.keyword, ct.embedding = model, nearest, kwTerm, embTerm
			ct.sim, ct.embedded = s.best[cl], embedded
		}
	}
	return cov, evidence
}

func grow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n) // zeroed; callers keep it zero between uses
	}
	return b[:n]
}

// maxCos is the largest dot product of the unit vector q with the unit
// vectors packed in flat.
func maxCos(q, flat []float32) float32 {
	n := len(q)
	if n == 0 {
		return 0
	}
	best := float32(0)
	for i := 0; i+n <= len(flat); i += n {
		var d float32
		for j, x := range flat[i : i+n] {
			d += x * q[j]
		}
		best = max(best, d)
	}
	return best
}

// hits counts the keyword evidence in stems: one for each stem that is a
// keyword, two for each keyword phrase they contain. With matched set it
// also appends the keywords found, as written, once each.
func (ks keywordSet) hits(stems []string, matched *[]string) int {
	n := 0
	for _, s := range stems {
		if kw, ok := ks.words[s]; ok {
			n++
			if matched != nil && !slices.Contains(*matched, kw) {
				*matched = append(*matched, kw)
			}
		}
	}
	for i, p := range ks.phrases {
		if containsRun(stems, p) {
			n += 2
			if matched != nil {
				*matched = append(*matched, ks.phraseText[i])
			}
		}
	}
	return n
}

func containsRun(toks, run []string) bool {
	for i := 0; i+len(run) <= len(toks); i++ {
		if slices.Equal(toks[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// stems are the stemmed content words of ws (stop words dropped), for
// keyword matching.
func stems(ws []string, dst []string) []string {
	dst = dst[:0]
	for _, w := range ws {
		if !stopWords[w] {
			dst = append(dst, stem(w))
		}
	}
	return dst
}

// Info describes a built router.
type Info struct {
	Domains  int `json:"domains"`
	Examples int `json:"examples"`
	// Background is how many background utterances were kept.
	Background int    `json:"background"`
	Features   int    `json:"features"`
	Model      string `json:"model"` // "linear" or "centroid"
	Embedded   bool   `json:"embedded"`
	// Calibration says what the confidence was fitted on: "held-out"
	// (examples and whole domains held out of a second training),
	// "samples" (Calibrate) or "prior" (too little data).
	Calibration        string        `json:"calibration"`
	CalibrationSamples int           `json:"calibration_samples"`
	TrainTime          time.Duration `json:"train_ns"`
	// LeftOut counts, per domain that had any, the keywords and examples
	// left out of training by Options.MaxDomainFeatures.
	LeftOut map[string]int `json:"left_out,omitempty"`
}

// DefaultMaxDomainFeatures is Options.MaxDomainFeatures when zero: several
// times what a real domain uses (the four shipped domains and the
// background together have about 24,000 features; CLINC150's ten domains of
// 1,500 examples, 39,000), while one manifest of distinct random words at
// the ABI's caps trains in a fraction of a second.
const DefaultMaxDomainFeatures = 40_000

// Hybrid is the router New builds. It is immutable and safe for concurrent
// use.
type Hybrid struct {
	opts  Options
	names []string
	core  *core
	cal   platt
	th    []float64 // per class threshold
	info  Info
	pool  *sync.Pool
	// texts are the training texts (keywords, examples, background) by
	// example document, the strings New was given; exStart is each
	// domain's first example document (its keywords come before it).
	texts   []string
	exStart []int32
}

// New trains a router on domains. With opts.Embedder set it embeds every
// example first (bounded by ctx).
func New(ctx context.Context, domains []Domain, opts Options) (*Hybrid, error) {
	if err := checkDomains(domains); err != nil {
		return nil, err
	}
	start := time.Now()
	sorted := slices.Clone(domains)
	slices.SortFunc(sorted, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	names := make([]string, len(sorted))
	for i, d := range sorted {
		names[i] = d.Name
	}
	if err := opts.check(names); err != nil {
		return nil, err
	}
	k := len(names)
	var exs []example
	var texts []string
	kw := make([]keywordSet, k)
	maxFeatures := cmp.Or(opts.MaxDomainFeatures, DefaultMaxDomainFeatures)
	var leftOut map[string]int
	exStart := make([]int32, k)
	for c, d := range sorted {
		kw[c] = keywordSet{words: map[string]string{}}
		// Keywords, then examples, while the domain's distinct features
		// fit the budget.
		budget := featureBudget{max: maxFeatures, seen: map[uint64]struct{}{}}
		keys, keyHashes, n1 := budget.take(d.Keywords)
		examples, exHashes, n2 := budget.take(d.Examples)
		if n1+n2 > 0 {
			if leftOut == nil {
				leftOut = map[string]int{}
			}
			leftOut[d.Name] = n1 + n2
			opts.Logger.Warn("router: domain over the training budget; the rest of its keywords and examples are left out",
				"domain", d.Name, "keywords_left_out", n1, "examples_left_out", n2, "max_domain_features", maxFeatures)
		}
		for i, key := range keys {
			st := stems(words(key, nil), nil)
			switch len(st) {
			case 0:
				continue
			case 1:
				if _, dup := kw[c].words[st[0]]; !dup {
					kw[c].words[st[0]] = key
				}
			default:
				kw[c].phrases = append(kw[c].phrases, st)
				kw[c].phraseText = append(kw[c].phraseText, key)
			}
			exs = append(exs, example{class: c, hashes: keyHashes[i]})
			texts = append(texts, key)
		}
		exStart[c] = int32(len(exs))
		for i, e := range examples {
			h := exHashes[i]
			if len(h) == 0 {
				continue
			}
			exs = append(exs, example{class: c, hashes: h})
			texts = append(texts, e)
		}
	}
	bg := backgroundFor(opts.Background, exs, kw)
	classes := k
	if len(bg) > 0 {
		classes++
		kw = append(kw, keywordSet{})
		for _, b := range bg {
			exs = append(exs, example{class: k, hashes: featureHashes(words(b, nil), nil)})
			texts = append(texts, b)
		}
	}
	if opts.Embedder != nil {
		vecs, err := embedAll(ctx, opts.Embedder, texts)
		if err != nil {
			return nil, fmt.Errorf("router: embedding stage: %w", err)
		}
		for i := range exs {
			exs[i].emb = vecs[i]
		}
	}
	h := &Hybrid{opts: opts, names: names, pool: newPool(), texts: texts, exStart: exStart}
	all := make([]bool, classes)
	for i := range all {
		all[i] = true
	}
	h.core = buildCore(exs, kw, all, classes, opts, bgClass(classes, k))
	h.info = Info{Domains: k, Examples: len(exs) - len(bg), Background: len(bg), Features: h.core.features, Model: "linear",
		Embedded: opts.Embedder != nil, Calibration: "prior", LeftOut: leftOut}
	if h.core.lin == nil {
		h.info.Model = "centroid"
	}
	h.cal = defaultPlatt
	if pts := h.heldOut(exs, kw); len(pts) > 0 {
		if p, ok := fitPlatt(pts); ok && enough(pts) {
			h.cal, h.info.Calibration, h.info.CalibrationSamples = p, "held-out", len(pts)
		}
	}
	h.setThresholds()
	h.info.TrainTime = time.Since(start)
	opts.Logger.Debug("router trained", "domains", k, "examples", h.info.Examples, "features", h.core.features,
		"model", h.info.Model, "calibration", h.info.Calibration, "platt", h.cal, "background", len(bg), "took", h.info.TrainTime)
	return h, nil
}

// featureBudget admits texts while the distinct features they add up to
// stay within max; once one does not fit, it and all later texts are left
// out.
type featureBudget struct {
	max  int
	seen map[uint64]struct{}
	full bool
}

// take returns the longest prefix of texts that fits with each text's
// feature hashes (which training uses, so they are computed once), and
// how many texts it leaves out.
func (b *featureBudget) take(texts []string) ([]string, [][]uint64, int) {
	if b.full {
		return nil, nil, len(texts)
	}
	hashes := make([][]uint64, 0, len(texts))
	for i, t := range texts {
		h := featureHashes(words(t, nil), nil)
		fresh := 0
		for _, x := range h {
			if _, ok := b.seen[x]; !ok {
				fresh++
			}
		}
		if len(b.seen)+fresh > b.max {
			b.full = true
			return texts[:i], hashes, len(texts) - i
		}
		for _, x := range h {
			b.seen[x] = struct{}{}
		}
		hashes = append(hashes, h)
	}
	return texts, hashes, 0
}

// bgMargin is how far (in logit units) the background class must beat the
// best domain for the query to be refused outright.
const bgMargin = 1.0

// bgMaxSim is the cosine similarity to a domain example above which a
// background utterance is left out.
const bgMaxSim = 0.5

// backgroundFor keeps the background utterances that share no keyword with
// a domain and are not too similar to any of its examples.
func backgroundFor(bg []string, exs []example, kw []keywordSet) []string {
	if len(bg) == 0 {
		return nil
	}
	var cand []string
	var hashes [][]uint64
	for _, b := range bg {
		ws := words(b, nil)
		st := stems(ws, nil)
		if len(ws) == 0 || slices.ContainsFunc(kw, func(k keywordSet) bool { return k.hits(st, nil) > 0 }) {
			continue
		}
		cand = append(cand, b)
		hashes = append(hashes, featureHashes(ws, nil))
	}
	docs := make([][]uint64, 0, len(exs)+len(cand))
	for _, e := range exs {
		docs = append(docs, slices.Clone(e.hashes))
	}
	for _, h := range hashes {
		docs = append(docs, slices.Clone(h))
	}
	voc := buildVocab(docs)
	vecs := make([]sparseVec, len(exs))
	for i := range exs {
		vecs[i], _, _ = voc.vector(docs[i], sparseVec{})
	}
	idx := newPostings(len(voc.idf), vecs)
	acc := make([]float32, len(exs))
	var touched []int32
	var kept []string
	for i, b := range cand {
		v, _, _ := voc.vector(docs[len(exs)+i], sparseVec{})
		touched = idx.dots(v, math.MaxInt, acc, touched[:0])
		var top float32
		for _, d := range touched {
			top = max(top, acc[d])
			acc[d] = 0
		}
		if top <= bgMaxSim {
			kept = append(kept, b)
		}
	}
	return kept
}

func newPool() *sync.Pool {
	return &sync.Pool{New: func() any { return new(scratch) }}
}

func (h *Hybrid) setThresholds() {
	h.th = make([]float64, len(h.names))
	for i, n := range h.names {
		h.th[i] = h.opts.Threshold
		if t, ok := h.opts.DomainThresholds[n]; ok {
			h.th[i] = t
		}
	}
}

// heldOut trains a second core without every fifth example of each domain
// and without about one domain in five, then scores what was left out:
// held-out examples of known domains are right or wrong, those of the
// left-out domains stand for out-of-scope queries and are always wrong.
func (h *Hybrid) heldOut(exs []example, kw []keywordSet) []calPoint {
	k := len(h.names)
	if len(exs) < 20 {
		return nil
	}
	active := make([]bool, len(kw))
	for c := range active {
		active[c] = k < 3 || c >= k || (c*7+int(h.opts.Seed))%5 != 0
	}
	if k >= 3 && !slices.Contains(active, false) {
		active[0] = false
	}
	var train []example
	var test []example
	seen := make([]int, len(kw))
	for _, e := range exs {
		seen[e.class]++
		switch {
		case e.class >= k && seen[e.class]%5 == 0:
			test = append(test, e) // background held out: out of scope
		case e.class >= k:
			train = append(train, e)
		case !active[e.class]:
			test = append(test, e)
		case seen[e.class]%5 == 0:
			test = append(test, e)
		default:
			train = append(train, e)
		}
	}
	if len(test) == 0 || len(train) == 0 {
		return nil
	}
	o := h.opts
	o.Seed++
	c := buildCore(train, kw, active, len(kw), o, bgClass(len(kw), k))
	s := new(scratch)
	pts := make([]calPoint, 0, len(test))
	known, unknown := 0, 0
	for _, e := range test {
		q := query{hashes: e.hashes, emb: e.emb}
		cov, _ := c.score(&q, s, nil)
		b, _, _ := best(s.fused, k)
		z, m := calFeatures(s.fused, b, cov)
		pts = append(pts, calPoint{z: z, m: m, ok: e.class < k && active[e.class] && b == e.class})
		if e.class < k && active[e.class] {
			known++
		} else {
			unknown++
		}
	}
	// Weigh the stand-ins for out-of-scope queries to oosPrior of the total.
	if unknown > 0 && known > 0 {
		w := oosPrior / (1 - oosPrior) * float64(known) / float64(unknown)
		for i, e := range test {
			if e.class >= k || !active[e.class] {
				pts[i].w = w
			}
		}
	}
	return pts
}

// enough says whether held-out points can support their own calibration:
// at least minCalPoints of them with minCalPoints/5 right and wrong each.
func enough(pts []calPoint) bool {
	right := 0
	for _, p := range pts {
		if p.ok {
			right++
		}
	}
	return len(pts) >= minCalPoints && right >= minCalPoints/5 && len(pts)-right >= minCalPoints/5
}

const minCalPoints = 50

// calFeatures are what the calibration sees of class c: its fused score
// plus coverage, and the log-odds of its softmax share among all classes.
func calFeatures(f []float64, c int, cov float64) (z, m float64) {
	mx := math.Inf(-1)
	for o, v := range f {
		if o != c {
			mx = max(mx, v)
		}
	}
	if math.IsInf(mx, -1) {
		return f[c] + wCov*cov, 0
	}
	var sum float64
	for o, v := range f {
		if o != c && !math.IsInf(v, -1) {
			sum += math.Exp(v - mx)
		}
	}
	return f[c] + wCov*cov, f[c] - mx - math.Log(sum)
}

// best returns the best of the first n classes (the domains), its score
// and its margin over the best other class, the background included.
func best(f []float64, n int) (cl int, score, margin float64) {
	for c := 1; c < n; c++ {
		if f[c] > f[cl] {
			cl = c
		}
	}
	other := math.Inf(-1)
	for c, v := range f {
		if c != cl {
			other = max(other, v)
		}
	}
	if math.IsInf(other, -1) {
		return cl, f[cl], 0
	}
	return cl, f[cl], f[cl] - other
}

func embedAll(ctx context.Context, e Embedder, texts []string) ([][]float32, error) {
	const batch = 64
	out := make([][]float32, 0, len(texts))
	for i := 0; i < len(texts); i += batch {
		vs, err := e.Embed(ctx, texts[i:min(i+batch, len(texts))])
		if err != nil {
			return nil, err
		}
		if len(vs) != min(batch, len(texts)-i) {
			return nil, fmt.Errorf("embedder returned %d vectors for %d inputs", len(vs), min(batch, len(texts)-i))
		}
		for _, v := range vs {
			if len(out) > 0 && len(v) != len(out[0]) {
				return nil, fmt.Errorf("embedder returned vectors of %d and %d dimensions", len(out[0]), len(v))
			}
			out = append(out, unit(v))
		}
	}
	return out, nil
}

func unit(v []float32) []float32 {
	u := slices.Clone(v)
	l2norm(u)
	return u
}

// Domains lists the domain names, sorted.
func (h *Hybrid) Domains() []string { return slices.Clone(h.names) }

// Info describes how the router was built.
func (h *Hybrid) Info() Info { return h.info }

// Route decides where query goes.
func (h *Hybrid) Route(ctx context.Context, q string) Decision {
	s := h.pool.Get().(*scratch)
	defer h.pool.Put(s)
	h.prepare(ctx, q, s)
	return h.decide(s, nil)
}

// prepare fills s.q with query q: its words, stems, feature hashes and,
// with an embedder, its embedding.
func (h *Hybrid) prepare(ctx context.Context, q string, s *scratch) {
	s.q.words = words(q, s.q.words)
	s.q.stems = stems(s.q.words, s.q.stems)
	s.q.hashes = featureHashes(s.q.words, s.q.hashes[:0])
	s.q.emb = nil
	if h.opts.Embedder != nil && len(s.q.words) > 0 {
		if vs, err := h.opts.Embedder.Embed(ctx, []string{q}); err != nil || len(vs) != 1 {
			h.opts.Logger.Warn("router: embedding the query failed; routing on lexical evidence", "err", err)
		} else {
			s.q.emb = unit(vs[0])
		}
	}
}

// Reasons an Explanation gives for a Decision.
const (
	ReasonRouted         = "routed"          // the best domain's confidence reached its threshold
	ReasonNoEvidence     = "no_evidence"     // no known feature and no keyword in the query
	ReasonBackground     = "background"      // the background class beat every domain by the margin
	ReasonBelowThreshold = "below_threshold" // the best domain's confidence was under its threshold
	ReasonNoDomains      = "no_domains"      // the router has no domain
)

// decide scores the prepared query s.q and decides; with t set it also
// records why.
func (h *Hybrid) decide(s *scratch, t *trace) Decision {
	cov, evidence := h.core.score(&s.q, s, t)
	if t != nil {
		t.cov, t.evidence = cov, evidence
	}
	k := len(h.names)
	if k == 0 {
		if t != nil {
			t.reason = ReasonNoDomains
		}
		return Decision{OutOfScope: true, Alternatives: []Scored{}}
	}
	// The top domains, each scored with its margin over the best other
	// class (the background included).
	n := min(h.opts.TopK, k)
	order := make([]int, 0, n+1)
	for c := 0; c < k; c++ {
		at := len(order)
		for at > 0 && s.fused[c] > s.fused[order[at-1]] {
			at--
		}
		if at < n {
			order = slices.Insert(order, at, c)
			if len(order) > n {
				order = order[:n]
			}
		}
	}
	alts := make([]Scored, 0, n)
	for _, c := range order {
		p := 0.0
		if evidence {
			p = h.cal.prob(calFeatures(s.fused, c, cov))
		}
		alts = append(alts, Scored{Domain: h.names[c], Score: p})
	}
	d := Decision{Confidence: alts[0].Score, Alternatives: alts}
	// The background class is "none of these": when it beats every domain
	// by bgMargin the query is out of scope whatever the confidence says.
	bgWins := len(s.fused) > k && s.fused[k] > s.fused[order[0]]+bgMargin
	if t != nil {
		t.bgWins, t.threshold = bgWins, h.th[order[0]]
		switch {
		case !evidence:
			t.reason = ReasonNoEvidence
		case bgWins:
			t.reason = ReasonBackground
		default:
			t.reason = ReasonBelowThreshold
		}
	}
	if !evidence || bgWins || d.Confidence < h.th[order[0]] || d.Confidence == 0 {
		d.OutOfScope = true
		return d
	}
	if t != nil {
		t.reason = ReasonRouted
	}
	d.Domain = h.names[order[0]]
	return d
}

// Calibrate returns a copy of the router whose confidence is refitted on
// labelled samples (Domain "" for out-of-scope ones), for example a
// validation set. It needs both right and wrong (or out-of-scope) routes
// among the samples.
func (h *Hybrid) Calibrate(ctx context.Context, samples []Sample) (*Hybrid, error) {
	idx := map[string]int{}
	for i, n := range h.names {
		idx[n] = i
	}
	pts := make([]calPoint, 0, len(samples))
	for i, sm := range samples {
		want := -1
		if sm.Domain != "" {
			c, ok := idx[sm.Domain]
			if !ok {
				return nil, fmt.Errorf("router: calibration sample %d: unknown domain %q", i, sm.Domain)
			}
			want = c
		}
		z, m, got, err := h.raw(ctx, sm.Query)
		if err != nil {
			return nil, err
		}
		pts = append(pts, calPoint{z: z, m: m, ok: got == want})
	}
	p, ok := fitPlatt(pts)
	if !ok {
		return nil, fmt.Errorf("router: calibration needs right and wrong routes among %d samples", len(samples))
	}
	c := *h
	c.cal = p
	c.info.Calibration, c.info.CalibrationSamples = "samples", len(pts)
	return &c, nil
}

// raw returns the best class with its calibration features for q.
func (h *Hybrid) raw(ctx context.Context, q string) (z, m float64, cl int, err error) {
	s := new(scratch)
	s.q.words = words(q, nil)
	s.q.stems = stems(s.q.words, nil)
	s.q.hashes = featureHashes(s.q.words, nil)
	if h.opts.Embedder != nil && len(s.q.words) > 0 {
		vs, err := h.opts.Embedder.Embed(ctx, []string{q})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("router: embedding a calibration sample: %w", err)
		}
		s.q.emb = unit(vs[0])
	}
	cov, _ := h.core.score(&s.q, s, nil)
	b, _, _ := best(s.fused, len(h.names))
	z, m = calFeatures(s.fused, b, cov)
	return z, m, b, nil
}

// WithThresholds returns a copy of the router with other out-of-scope
// thresholds.
func (h *Hybrid) WithThresholds(global float64, perDomain map[string]float64) (*Hybrid, error) {
	c := *h
	c.opts.Threshold, c.opts.DomainThresholds = global, perDomain
	if err := c.opts.check(c.names); err != nil {
		return nil, err
	}
	c.setThresholds()
	return &c, nil
}
