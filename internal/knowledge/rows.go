package knowledge

// rowReader is what database/sql's and pgx's query results have in
// common: the stores read their rows through the helpers below, so only
// the SQL differs between dialects.
type rowReader interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// readRows calls scan on each row, then returns the rows' error.
func readRows(rows rowReader, scan func(rowReader) error) error {
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// readDocuments reads rows of docColumns.
func readDocuments(rows rowReader, capacity int) ([]Document, error) {
	out := make([]Document, 0, capacity)
	err := readRows(rows, func(r rowReader) error {
		d, err := scanDocument(r)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// readKBs reads rows of name, documents, chunks, bytes, updated.
func readKBs(rows rowReader) ([]KB, error) {
	out := []KB{}
	err := readRows(rows, func(r rowReader) error {
		var k KB
		var updated int64
		if err := r.Scan(&k.Name, &k.Documents, &k.Chunks, &k.Bytes, &updated); err != nil {
			return err
		}
		k.Updated = fromNano(updated)
		out = append(out, k)
		return nil
	})
	return out, err
}

// readScored reads rows of chunk id and score; sign multiplies the score
// (FTS5's bm25 is lower for better matches).
func readScored(rows rowReader, sign float64) ([]scored, error) {
	var out []scored
	err := readRows(rows, func(r rowReader) error {
		var sc scored
		if err := r.Scan(&sc.id, &sc.score); err != nil {
			return err
		}
		sc.score *= sign
		out = append(out, sc)
		return nil
	})
	return out, err
}

// readVectors calls f with each row of chunk id and encoded vector; B is
// the driver's type for bytes valid until the next row, and v is reused
// between calls.
func readVectors[B ~[]byte](rows rowReader, f func(id int64, v []float32)) error {
	var v []float32
	return readRows(rows, func(r rowReader) error {
		var id int64
		var b B
		if err := r.Scan(&id, &b); err != nil {
			return err
		}
		v = decodeVec(v[:0], b)
		f(id, v)
		return nil
	})
}

// readHits reads rows of chunk id, document id, sequence, text, title and
// source, and returns them in ranked's order with its scores; a chunk
// missing from the rows (deleted since it was ranked) is left out.
func readHits(rows rowReader, ranked []fused) ([]Hit, error) {
	byID := make(map[int64]Hit, len(ranked))
	err := readRows(rows, func(r rowReader) error {
		var id int64
		var h Hit
		if err := r.Scan(&id, &h.DocID, &h.Chunk, &h.Text, &h.Title, &h.Source); err != nil {
			return err
		}
		byID[id] = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Hit, 0, len(ranked))
	for _, r := range ranked {
		h, ok := byID[r.id]
		if !ok {
			continue
		}
		h.Score, h.Lexical, h.Semantic = r.score, r.lexical, r.semantic
		out = append(out, h)
	}
	return out, nil
}
