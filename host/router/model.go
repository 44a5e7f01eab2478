package router

import (
	"math"
	"math/rand/v2"
	"slices"
)

// vocab maps feature hashes seen in training to rows, with their IDF.
type vocab struct {
	rows map[uint64]int32
	idf  []float32
}

func buildVocab(docs [][]uint64) *vocab {
	v := &vocab{rows: map[uint64]int32{}}
	var df []int32
	var seen []uint64
	for _, d := range docs {
		seen = append(seen[:0], d...)
		slices.Sort(seen)
		seen = slices.Compact(seen)
		for _, h := range seen {
			r, ok := v.rows[h]
			if !ok {
				r = int32(len(df))
				v.rows[h] = r
				df = append(df, 0)
			}
			df[r]++
		}
	}
	n := float64(len(docs))
	v.idf = make([]float32, len(df))
	for i, c := range df {
		v.idf[i] = float32(math.Log((n+1)/(float64(c)+1)) + 1)
	}
	return v
}

// vector turns hashes (sorted in place) into an L2-normalised TF-IDF
// vector sorted by row. It also says how many distinct features the query
// had and how many of them the vocabulary knows.
func (v *vocab) vector(hashes []uint64, dst sparseVec) (vec sparseVec, known, distinct int) {
	slices.Sort(hashes)
	vec = sparseVec{idx: dst.idx[:0], val: dst.val[:0]}
	for i := 0; i < len(hashes); {
		j := i + 1
		for j < len(hashes) && hashes[j] == hashes[i] {
			j++
		}
		distinct++
		if r, ok := v.rows[hashes[i]]; ok {
			known++
			tf := 1 + math.Log(float64(j-i))
			vec.idx = append(vec.idx, r)
			vec.val = append(vec.val, float32(tf)*v.idf[r])
		}
		i = j
	}
	sortVec(vec)
	l2norm(vec.val)
	return vec, known, distinct
}

func sortVec(v sparseVec) {
	// Insertion sort: query vectors are short and nearly random; training
	// vectors are sorted once.
	for i := 1; i < len(v.idx); i++ {
		for j := i; j > 0 && v.idx[j] < v.idx[j-1]; j-- {
			v.idx[j], v.idx[j-1] = v.idx[j-1], v.idx[j]
			v.val[j], v.val[j-1] = v.val[j-1], v.val[j]
		}
	}
}

// linear is a multinomial logistic regression over sparse rows: w holds
// k weights per row.
type linear struct {
	k int
	w []float32
	b []float32
}

type trainOpts struct {
	epochs int
	lr     float64
	l2     float64
	seed   uint64
}

// trainLinear fits the model by SGD. weight, when not nil, scales each
// class's loss (a large background class counts like an average domain).
func trainLinear(xs []sparseVec, ys []int, k, rows int, o trainOpts, weight []float64) *linear {
	m := &linear{k: k, w: make([]float32, rows*k), b: make([]float32, k)}
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(o.seed, 0x6d647361))
	scores := make([]float64, k)
	// Weight decay is applied lazily through a global scale.
	scale := 1.0
	t := 0
	// The weights returned are the average of the end-of-epoch weights over
	// the second half of training, which makes the model far less
	// dependent on the order the examples came in.
	var avgW, avgB []float32
	avgN := 0
	for ep := 0; ep < o.epochs; ep++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			t++
			lr := o.lr / (1 + o.lr*o.l2*float64(t))
			x, y := xs[i], ys[i]
			m.scores(x, scores, float32(scale))
			softmax(scores)
			scale *= 1 - lr*o.l2
			if scale < 1e-6 {
				for j := range m.w {
					m.w[j] *= float32(scale)
				}
				scale = 1
			}
			step := lr / scale
			for c := 0; c < k; c++ {
				g := scores[c]
				if c == y {
					g -= 1
				}
				if weight != nil {
					g *= weight[y]
				}
				if g == 0 {
					continue
				}
				m.b[c] -= float32(lr * g)
				gs := float32(step * g)
				for j, r := range x.idx {
					m.w[int(r)*k+c] -= gs * x.val[j]
				}
			}
		}
		if ep >= o.epochs/2 {
			if avgW == nil {
				avgW, avgB = make([]float32, len(m.w)), make([]float32, k)
			}
			for j, w := range m.w {
				avgW[j] += w * float32(scale)
			}
			for c, b := range m.b {
				avgB[c] += b
			}
			avgN++
		}
	}
	if avgN > 0 {
		inv := float32(1 / float64(avgN))
		for j := range m.w {
			m.w[j] = avgW[j] * inv
		}
		for c := range m.b {
			m.b[c] = avgB[c] * inv
		}
	}
	return m
}

// scores writes the logits of x into out (len k).
func (m *linear) scores(x sparseVec, out []float64, scale float32) {
	k := m.k
	var stack [64]float32
	var acc []float32
	if k <= len(stack) {
		acc = stack[:k]
	} else {
		acc = make([]float32, k)
	}
	for j, r := range x.idx {
		v := x.val[j] * scale
		row := m.w[int(r)*k : int(r)*k+k]
		for c, w := range row {
			acc[c] += v * w
		}
	}
	for c := range out {
		out[c] = float64(acc[c] + m.b[c])
	}
}

func softmax(s []float64) {
	mx := math.Inf(-1)
	for _, v := range s {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range s {
		s[i] = math.Exp(v - mx)
		sum += s[i]
	}
	for i := range s {
		s[i] /= sum
	}
}
