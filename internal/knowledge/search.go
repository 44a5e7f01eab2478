package knowledge

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// searchBackend is the storage half of Search, which a store provides.
type searchBackend interface {
	// kbState returns ErrNotFound unless the tenant has knowledge base kb,
	// else the number of chunks it holds and the version of its contents
	// (always 0 where the store does not version them).
	kbState(ctx context.Context, tenant, kb string) (chunks int, ver int64, err error)
	// lexical returns the depth chunks of the knowledge base that match
	// any of terms best, best first, scored higher = better.
	lexical(ctx context.Context, tenant, kb string, terms []string, depth int) ([]scored, error)
	// scanVectors calls f with each vector of the knowledge base, in chunk
	// order; v is reused between calls.
	scanVectors(ctx context.Context, tenant, kb string, f func(id int64, v []float32)) error
	// loadVectors reads all the vectors of the knowledge base (of chunks
	// chunks, a hint) for the cache, and the version they are of.
	loadVectors(ctx context.Context, tenant, kb string, chunks int) (*vecSet, int64, error)
	// hits reads the chunks of ranked, in its order, with their
	// documents'; a chunk deleted since it was ranked is left out.
	hits(ctx context.Context, tenant, kb string, ranked []fused) ([]Hit, error)
}

// Search implements Store.
func (s *sqliteStore) Search(ctx context.Context, tenant, kb, query string, k int) ([]Hit, error) {
	return s.search(ctx, s, tenant, kb, query, k)
}

// search is Search over b: it checks the arguments, cuts the query into
// terms, ranks lexically and (with an Embedder) by vectors, fuses the
// rankings and reads the hits.
func (c *core) search(ctx context.Context, b searchBackend, tenant, kb, query string, k int) ([]Hit, error) {
	if err := checkScope(tenant, kb); err != nil {
		return nil, fmt.Errorf("knowledge: search: %w", err)
	}
	if k < 1 || k > MaxK {
		return nil, fmt.Errorf("knowledge: search %s: %w: k is %d, not within 1..%d", kb, ErrInvalid, k, MaxK)
	}
	if len(query) > MaxQueryLen {
		return nil, fmt.Errorf("knowledge: search %s: %w: query is %d bytes, more than %d", kb, ErrInvalid, len(query), MaxQueryLen)
	}
	terms := queryTerms(query)
	if len(terms) == 0 {
		return nil, fmt.Errorf("knowledge: search %s: %w: query %q holds no word to search for", kb, ErrInvalid, truncate(query, 80))
	}
	chunks, ver, err := b.kbState(ctx, tenant, kb)
	if err != nil {
		return nil, fmt.Errorf("knowledge: search: %w", err)
	}
	var semantic []scored
	depth := k
	if c.embedder != nil {
		depth = rankDepth
		q, err := embed(ctx, c.embedder, []string{strings.ToValidUTF8(query, " ")})
		if err != nil {
			return nil, fmt.Errorf("knowledge: search %s: query: %w", kb, err)
		}
		if semantic, err = c.semantic(ctx, b, tenant, kb, chunks, ver, q[0]); err != nil {
			return nil, fmt.Errorf("knowledge: search %s: %w", kb, err)
		}
	}
	lexical, err := b.lexical(ctx, tenant, kb, terms, depth)
	if err != nil {
		return nil, fmt.Errorf("knowledge: search %s: %w", kb, err)
	}

	var ranked []fused
	if c.embedder == nil {
		ranked = make([]fused, len(lexical))
		for i, l := range lexical {
			ranked[i] = fused{id: l.id, score: l.score, lexical: i + 1}
		}
	} else {
		ranked = fuse(lexical, semantic)
	}
	ranked = ranked[:min(len(ranked), k)]
	hits := []Hit{}
	if len(ranked) > 0 {
		if hits, err = b.hits(ctx, tenant, kb, ranked); err != nil {
			return nil, fmt.Errorf("knowledge: search %s: %w", kb, err)
		}
	}
	return hits, nil
}

// semantic returns the rankDepth chunks of the knowledge base whose
// vectors are most similar to q (unit length), best first, scored by
// cosine similarity. The vectors come from the cache, loaded into it when
// they fit, and used while the knowledge base stays at version ver; a
// knowledge base too large for the cache (chunks is its chunk count) is
// read straight from the database.
func (c *core) semantic(ctx context.Context, b searchBackend, tenant, kb string, chunks int, ver int64, q []float32) ([]scored, error) {
	if chunks == 0 {
		return nil, nil
	}
	if size := chunks * (len(q) + 2); c.vectors.max < 1 || size > c.vectors.max {
		t := topK{k: rankDepth}
		err := b.scanVectors(ctx, tenant, kb, func(id int64, v []float32) {
			if len(v) == len(q) {
				t.add(id, float64(dot(q, v)))
			}
		})
		if err != nil {
			return nil, err
		}
		return t.sorted(), nil
	}
	set, err := c.vectors.get(ctx, scopeKey{tenant, kb}, ver, func(ctx context.Context) (*vecSet, int64, error) {
		return b.loadVectors(ctx, tenant, kb, chunks)
	})
	if err != nil {
		return nil, err
	}
	return set.search(q, rankDepth), nil
}

// collectVectors builds a vecSet of the vectors scan offers (the vectors
// of a knowledge base of about chunks chunks); vectors of another
// dimension than the first are left out.
func collectVectors(chunks int, scan func(f func(id int64, v []float32)) error) (*vecSet, error) {
	set := &vecSet{}
	err := scan(func(id int64, v []float32) {
		if set.dim == 0 {
			set.dim = len(v)
			set.ids = make([]int64, 0, chunks)
			set.data = make([]float32, 0, chunks*len(v))
		}
		if len(v) == set.dim {
			set.ids = append(set.ids, id)
			set.data = append(set.data, v...)
		}
	})
	return set, err
}

// kbState implements searchBackend; the SQLite store's cache is kept
// fresh by its own writes, so its version is always 0.
func (s *sqliteStore) kbState(ctx context.Context, tenant, kb string) (int, int64, error) {
	chunks, err := kbExists(ctx, s.r, tenant, kb)
	return chunks, 0, err
}

// loadVectors implements searchBackend.
func (s *sqliteStore) loadVectors(ctx context.Context, tenant, kb string, chunks int) (*vecSet, int64, error) {
	set, err := collectVectors(chunks, func(f func(id int64, v []float32)) error {
		return s.scanVectors(ctx, tenant, kb, f)
	})
	return set, 0, err
}

// lexicalSQL ranks a knowledge base's chunks by BM25. Arguments: the MATCH
// expression (ftsQuery), the depth, tenant and knowledge base.
const lexicalSQL = `SELECT m.id, m.score FROM (
	   SELECT rowid AS id, bm25(chunks_fts, 0.0, 1.0) AS score
	   FROM chunks_fts WHERE chunks_fts MATCH ?
	   ORDER BY score LIMIT ?
	 ) AS m
	 CROSS JOIN chunks AS c ON c.id = m.id
	 WHERE +c.tenant = ? AND +c.kb = ?
	 ORDER BY m.score, m.id`

// hitsSQL reads n chunks, by id, with their documents'. Arguments: tenant,
// knowledge base, tenant, knowledge base, and the n ids.
func hitsSQL(n int) string {
	return `SELECT c.id, c.doc_id, c.seq, c.text, d.title, d.source
	 FROM chunks AS c CROSS JOIN documents AS d ON d.id = c.doc_id
	 WHERE +c.tenant = ? AND +c.kb = ? AND +d.tenant = ? AND +d.kb = ?
	   AND c.id IN (` + strings.Repeat("?, ", n-1) + `?)`
}

// lexical returns the depth chunks of the knowledge base best ranked by
// BM25, best first, scored by the negated BM25 score. The MATCH is
// confined to the knowledge base by its scope token, and the join checks
// tenant and knowledge base again (a CROSS JOIN, and unary pluses on the
// checks, so that SQLite looks the ranked few up by id rather than scanning
// the knowledge base's chunks).
func (s *sqliteStore) lexical(ctx context.Context, tenant, kb string, terms []string, depth int) ([]scored, error) {
	rows, err := s.r.QueryContext(ctx, lexicalSQL,
		ftsQuery(scopeToken(tenant, kb), terms), depth, tenant, kb)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	defer rows.Close()
	out, err := readScored(rows, -1)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	return out, nil
}

// scanVectors calls f with each vector of the knowledge base, in chunk
// order; v is reused between calls.
func (s *sqliteStore) scanVectors(ctx context.Context, tenant, kb string, f func(id int64, v []float32)) error {
	rows, err := s.r.QueryContext(ctx,
		`SELECT chunk_id, vec FROM vectors WHERE tenant = ? AND kb = ? ORDER BY chunk_id`,
		tenant, kb)
	if err != nil {
		return fmt.Errorf("read vectors: %w", err)
	}
	defer rows.Close()
	if err := readVectors[sql.RawBytes](rows, f); err != nil {
		return fmt.Errorf("read vectors: %w", err)
	}
	return nil
}

// hits reads the chunks of ranked, in its order, with their documents'.
// A chunk deleted since it was ranked is left out. (The unary pluses keep
// SQLite from scanning the knowledge base's index for tenant and kb: the
// chunks are looked up by id, then checked.)
func (s *sqliteStore) hits(ctx context.Context, tenant, kb string, ranked []fused) ([]Hit, error) {
	args := []any{tenant, kb, tenant, kb}
	for _, r := range ranked {
		args = append(args, r.id)
	}
	rows, err := s.r.QueryContext(ctx, hitsSQL(len(ranked)),
		args...)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	defer rows.Close()
	out, err := readHits(rows, ranked)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	return out, nil
}
