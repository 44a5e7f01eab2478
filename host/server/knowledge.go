package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/knowledge"
)

// Knowledge bases of the caller's tenant ([knowledge] enabled = true):
//
//	GET    /v1/knowledge                        the tenant's knowledge bases
//	POST   /v1/knowledge/{kb}/documents         ingest a document (JSON, or the raw text/plain, text/markdown, text/html body)
//	GET    /v1/knowledge/{kb}/documents         its documents, newest first (?limit=, ?before=ID)
//	GET    /v1/knowledge/{kb}/documents/{id}
//	DELETE /v1/knowledge/{kb}/documents/{id}
//	DELETE /v1/knowledge/{kb}                   the base and all its documents
//	POST   /v1/knowledge/{kb}/search            {"query", "top_k"}: the best passages
//
// Every operation is the caller's tenant's: another tenant's document id
// is a 404, as an unknown one.

// Endpoint name of the knowledge API.
const epKnowledge = "knowledge"

// maxSearchBody bounds a search request.
const maxSearchBody = 64 << 10

func (s *Server) knowledgeRoutes(add func(method, path, endpoint string, h func(*call) *apiError)) {
	add(http.MethodGet, "/v1/knowledge", epKnowledge, s.kbList)
	add(http.MethodPost, "/v1/knowledge/{kb}/documents", epKnowledge, s.kbAdd)
	add(http.MethodGet, "/v1/knowledge/{kb}/documents", epKnowledge, s.kbDocs)
	add(http.MethodGet, "/v1/knowledge/{kb}/documents/{id}", epKnowledge, s.kbGet)
	add(http.MethodDelete, "/v1/knowledge/{kb}/documents/{id}", epKnowledge, s.kbDelete)
	add(http.MethodDelete, "/v1/knowledge/{kb}", epKnowledge, s.kbDeleteBase)
	add(http.MethodPost, "/v1/knowledge/{kb}/search", epKnowledge, s.kbSearch)
}

// knowledgeError maps a knowledge error onto the API's.
func knowledgeError(c *call, err error) *apiError {
	var le *knowledge.LimitError
	switch {
	case errors.Is(err, host.ErrKnowledgeOff):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "knowledge_disabled",
			Message: "this server keeps no knowledge bases: set [knowledge] enabled = true", Refused: refusedBadRequest}
	case errors.Is(err, knowledge.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "not_found",
			Message: "no such knowledge base or document for this API key", Refused: refusedBadRequest}
	case errors.As(err, &le):
		return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Code: "knowledge_limit",
			Message: "over a knowledge limit: " + err.Error() + "; delete documents or knowledge bases first", Refused: refusedBadRequest}
	case errors.Is(err, knowledge.ErrTooLarge):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "document_too_large",
			Message: err.Error() + " (knowledge.max_doc_kb)", Refused: refusedTooLarge}
	case errors.Is(err, knowledge.ErrUnsupportedType):
		return &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest, Code: "unsupported_type", Param: "type",
			Message: err.Error() + ": use text, markdown or html", Refused: refusedBadRequest}
	case errors.Is(err, knowledge.ErrInvalid):
		return badRequest("", "invalid_value", "%s", clip(err.Error(), maxErrorDetail))
	}
	// The embedding model's errors (not allowed, unavailable) and the rest.
	return hostError(c.id, err)
}

// kbName reads and checks the {kb} path value.
func kbName(c *call) (string, *apiError) {
	kb := c.r.PathValue("kb")
	if !knowledge.ValidKB(kb) {
		return "", badRequest("kb", "invalid_value", "knowledge base name %q: want 1-64 of [a-z0-9_-], starting with a letter or digit", clip(kb, 80))
	}
	return kb, nil
}

// kbList serves GET /v1/knowledge.
func (s *Server) kbList(c *call) *apiError {
	kbs, err := c.ht.KnowledgeBases(c.r.Context())
	if err != nil {
		return knowledgeError(c, err)
	}
	data := make([]map[string]any, 0, len(kbs))
	for _, k := range kbs {
		data = append(data, map[string]any{"object": "knowledge_base", "name": k.Name, "documents": k.Documents,
			"chunks": k.Chunks, "bytes": k.Bytes, "updated": k.Updated.Unix()})
	}
	c.json(http.StatusOK, map[string]any{"object": "list", "data": data})
	return nil
}

// Document types by media type.
var mediaTypes = map[string]string{
	"text/plain":      knowledge.TypeText,
	"text/markdown":   knowledge.TypeMarkdown,
	"text/x-markdown": knowledge.TypeMarkdown,
	"text/html":       knowledge.TypeHTML,
}

// kbAdd serves POST /v1/knowledge/{kb}/documents: a JSON document
// {"title", "source", "type", "text"}, or the document itself with its
// media type (text/plain, text/markdown, text/html) and ?title= and
// ?source=.
func (s *Server) kbAdd(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	// A document may be as large as knowledge.max_doc_kb, plus its JSON.
	data, aerr := c.bodyUpTo(max(c.s.cfg.Server.MaxBodyBytes, int64(c.s.cfg.Knowledge.MaxDocKB)<<10+64<<10))
	if aerr != nil {
		return aerr
	}
	ct := c.r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt = "application/json"
	} else if err != nil {
		return &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest, Code: "unsupported_type", Param: "Content-Type",
			Message: fmt.Sprintf("Content-Type %q does not parse: %v", clip(ct, 80), err), Refused: refusedBadRequest}
	}
	var in knowledge.Input
	switch typ, ok := mediaTypes[mt]; {
	case mt == "application/json":
		raw, aerr := jsonDoc(data)
		if aerr != nil {
			return aerr
		}
		var text string
		if aerr := object(raw, "", map[string]field{
			"title": str(&in.Title), "source": str(&in.Source), "type": str(&in.Type), "text": str(&text),
		}); aerr != nil {
			return aerr
		}
		if in.Type == "" {
			in.Type = knowledge.TypeText
		}
		in.Body = []byte(text)
	case ok:
		q := c.r.URL.Query()
		in = knowledge.Input{Title: q.Get("title"), Source: q.Get("source"), Type: typ, Body: data}
	default:
		return &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest, Code: "unsupported_type", Param: "Content-Type",
			Message: fmt.Sprintf("documents of type %q are not supported: send text/plain, text/markdown, text/html or application/json", clip(mt, 80)),
			Refused: refusedBadRequest}
	}
	doc, used, err := c.ht.AddDocument(c.r.Context(), kb, in)
	c.tokens = used // charged to the tenant's tokens per minute
	if err != nil {
		return knowledgeError(c, err)
	}
	c.json(http.StatusCreated, documentObject(doc))
	return nil
}

func documentObject(d knowledge.Document) map[string]any {
	return map[string]any{"object": "document", "id": d.ID, "kb": d.KB, "title": d.Title, "source": d.Source, "type": d.Type,
		"bytes": d.Bytes, "chunks": d.Chunks, "created": d.Created.Unix()}
}

// kbDocs serves GET /v1/knowledge/{kb}/documents.
func (s *Server) kbDocs(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	limit := 20
	if v := c.r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badRequest("limit", "invalid_value", "limit %q: want a whole number from 1 to 100", clip(v, 20))
		}
		limit = n
	}
	docs, err := c.ht.Documents(c.r.Context(), kb, limit, c.r.URL.Query().Get("before"))
	if err != nil {
		return knowledgeError(c, err)
	}
	data := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		data = append(data, documentObject(d))
	}
	c.json(http.StatusOK, map[string]any{"object": "list", "data": data, "has_more": len(docs) == limit})
	return nil
}

// kbGet serves GET /v1/knowledge/{kb}/documents/{id}.
func (s *Server) kbGet(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	d, err := c.ht.Document(c.r.Context(), kb, c.r.PathValue("id"))
	if err != nil {
		return knowledgeError(c, err)
	}
	c.json(http.StatusOK, documentObject(d))
	return nil
}

// kbDelete serves DELETE /v1/knowledge/{kb}/documents/{id}.
func (s *Server) kbDelete(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	id := c.r.PathValue("id")
	if err := c.ht.DeleteDocument(c.r.Context(), kb, id); err != nil {
		return knowledgeError(c, err)
	}
	c.json(http.StatusOK, map[string]any{"object": "document.deleted", "id": id, "deleted": true})
	return nil
}

// kbDeleteBase serves DELETE /v1/knowledge/{kb}.
func (s *Server) kbDeleteBase(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	n, err := c.ht.DeleteKnowledgeBase(c.r.Context(), kb)
	if err != nil {
		return knowledgeError(c, err)
	}
	c.json(http.StatusOK, map[string]any{"object": "knowledge_base.deleted", "name": kb, "deleted": true, "documents": n})
	return nil
}

// kbSearch serves POST /v1/knowledge/{kb}/search {"query", "top_k"}.
func (s *Server) kbSearch(c *call) *apiError {
	kb, aerr := kbName(c)
	if aerr != nil {
		return aerr
	}
	data, aerr := c.bodyUpTo(maxSearchBody)
	if aerr != nil {
		return aerr
	}
	raw, aerr := jsonDoc(data)
	if aerr != nil {
		return aerr
	}
	var query string
	k := 5
	if aerr := object(raw, "", map[string]field{"query": str(&query), "top_k": intField(&k, 1, 50)}); aerr != nil {
		return aerr
	}
	if strings.TrimSpace(query) == "" {
		return badRequest("query", "missing_field", "query is required")
	}
	hits, used, err := c.ht.SearchKnowledge(c.r.Context(), kb, query, k)
	c.tokens = used
	if err != nil {
		if errors.Is(err, knowledge.ErrInvalid) {
			return badRequest("query", "invalid_value", "query: %s", clip(err.Error(), maxErrorDetail))
		}
		return knowledgeError(c, err)
	}
	data2 := make([]map[string]any, 0, len(hits))
	for _, h := range hits {
		data2 = append(data2, map[string]any{"object": "passage", "document": h.DocID, "title": h.Title, "source": h.Source,
			"chunk": h.Chunk, "text": h.Text, "score": h.Score, "lexical_rank": h.Lexical, "semantic_rank": h.Semantic})
	}
	c.json(http.StatusOK, map[string]any{"object": "list", "data": data2})
	return nil
}

// bodyUpTo reads the body with its own limit (instead of
// server.max_body_bytes).
func (c *call) bodyUpTo(limit int64) ([]byte, *apiError) {
	return c.readLimited(limit, "this endpoint's limit of "+itoa(limit)+" bytes")
}
