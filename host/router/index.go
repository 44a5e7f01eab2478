package router

// postings is an inverted index from feature rows to the documents (examples
// or class centroids) that contain them, with their weights.
type postings struct {
	docs [][]int32
	vals [][]float32
}

func newPostings(rows int, vecs []sparseVec) *postings {
	p := &postings{docs: make([][]int32, rows), vals: make([][]float32, rows)}
	for d, v := range vecs {
		for j, r := range v.idx {
			p.docs[r] = append(p.docs[r], int32(d))
			p.vals[r] = append(p.vals[r], v.val[j])
		}
	}
	return p
}

// dots accumulates the dot product of q with every document sharing a row,
// into acc (indexed by document). Rows with more than limit documents are
// skipped: they are the commonest, lowest-IDF features and would dominate
// the cost. touched lists the documents whose acc became non-zero, so the
// caller can read and reset only those.
func (p *postings) dots(q sparseVec, limit int, acc []float32, touched []int32) []int32 {
	for j, r := range q.idx {
		docs := p.docs[r]
		if len(docs) > limit {
			continue
		}
		qv := q.val[j]
		vals := p.vals[r][:len(docs)]
		for i, d := range docs {
			if acc[d] == 0 {
				touched = append(touched, d)
			}
			acc[d] += qv * vals[i]
		}
	}
	return touched
}
