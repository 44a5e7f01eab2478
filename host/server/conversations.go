package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/convstore"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Conversations the server keeps ([conversations] enabled = true):
//
//	POST   /v1/conversations          a new, empty conversation of the caller's tenant
//	GET    /v1/conversations          the tenant's conversations, newest first (?limit=, ?before=ID)
//	GET    /v1/conversations/{id}     one, with its messages
//	DELETE /v1/conversations/{id}
//
// A /v1/query or /v1/chat/completions request that names a conversation_id
// is answered with the kept messages before its own, and its query and
// answer are appended when it succeeds. Every lookup is by tenant and id:
// another tenant's id is a 404, as an unknown one.

// Endpoint name of the conversations API.
const epConversations = "conversations"

// conversationSweep is how often expired conversations are deleted.
const conversationSweep = 10 * time.Minute

// openConversations opens the store of [conversations], or nil when off.
func openConversations(cfg config.Config, getenv func(string) string) (convstore.Store, error) {
	cc := cfg.Conversations
	if !cc.Enabled {
		return nil, nil
	}
	l := convstore.Limits{MaxPerTenant: cc.MaxPerTenant, MaxMessages: cc.MaxMessages, MaxBytes: int64(cc.MaxKB) << 10, TTL: cc.TTL.Duration}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st convstore.Store
	var err error
	switch cc.Store {
	case "postgres":
		url := cc.URL
		if cc.URLEnv != "" {
			if url = getenv(cc.URLEnv); url == "" {
				return nil, fmt.Errorf("server: [conversations] url_env in %s: environment variable %s is unset or empty", cfg.File, cc.URLEnv)
			}
		}
		st, err = convstore.OpenPostgres(ctx, url, l)
	default:
		st, err = convstore.OpenSQLite(ctx, cfg.Resolve(cc.Path), l)
	}
	if err != nil {
		return nil, fmt.Errorf("server: [conversations] (%s) in %s: %w", cc.Store, cfg.File, err)
	}
	return st, nil
}

// convTenant is the tenant a call's conversations belong to.
func (c *call) convTenant() string { return c.label }

func (s *Server) conversationsOff() *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "conversations_disabled",
		Message: "this server keeps no conversations: set [conversations] enabled = true", Refused: refusedBadRequest}
}

// convError maps a store error onto the API's.
func convError(c *call, id string, err error) *apiError {
	switch {
	case errors.Is(err, convstore.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "conversation_not_found", Param: "conversation_id",
			Message: fmt.Sprintf("no conversation %q for this API key", clip(id, 64)), Refused: refusedBadRequest}
	case errors.Is(err, convstore.ErrFull):
		return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Code: "conversation_limit", Param: "conversation_id",
			Message: "over a conversation limit ([conversations] max_per_tenant, max_messages, max_kb): " + err.Error() +
				"; delete old conversations or start a new one", Refused: refusedBadRequest}
	case errors.Is(err, convstore.ErrInvalid):
		return badRequest("conversation_id", "invalid_value", "conversation %q: %v", clip(id, 64), err)
	case errors.Is(err, context.Canceled):
		return &apiError{Status: statusClientClosed, Type: typeInvalidRequest, Code: "client_closed", Message: "the client went away"}
	}
	return internalError(c.id, err)
}

// convCreate serves POST /v1/conversations.
func (s *Server) convCreate(c *call) *apiError {
	if s.convs == nil {
		return s.conversationsOff()
	}
	sum, err := s.convs.Create(c.r.Context(), c.convTenant())
	if err != nil {
		return convError(c, "", err)
	}
	c.json(http.StatusCreated, conversationObject(sum, nil))
	return nil
}

// convList serves GET /v1/conversations.
func (s *Server) convList(c *call) *apiError {
	if s.convs == nil {
		return s.conversationsOff()
	}
	limit := 20
	if v := c.r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badRequest("limit", "invalid_value", "limit: want an integer from 1 to 100, got %q", clip(v, 20))
		}
		limit = n
	}
	list, err := s.convs.List(c.r.Context(), c.convTenant(), limit, c.r.URL.Query().Get("before"))
	if err != nil {
		return convError(c, c.r.URL.Query().Get("before"), err)
	}
	data := make([]map[string]any, 0, len(list))
	for _, sum := range list {
		data = append(data, conversationObject(sum, nil))
	}
	c.json(http.StatusOK, map[string]any{"object": "list", "data": data, "has_more": len(list) == limit})
	return nil
}

// convGet serves GET /v1/conversations/{id}.
func (s *Server) convGet(c *call) *apiError {
	if s.convs == nil {
		return s.conversationsOff()
	}
	id := c.r.PathValue("id")
	conv, err := s.convs.Get(c.r.Context(), c.convTenant(), id)
	if err != nil {
		return convError(c, id, err)
	}
	msgs := conv.History
	if msgs == nil {
		msgs = []abi.Message{}
	}
	c.json(http.StatusOK, conversationObject(conv.Summary, msgs))
	return nil
}

// convDelete serves DELETE /v1/conversations/{id}.
func (s *Server) convDelete(c *call) *apiError {
	if s.convs == nil {
		return s.conversationsOff()
	}
	id := c.r.PathValue("id")
	if err := s.convs.Delete(c.r.Context(), c.convTenant(), id); err != nil {
		return convError(c, id, err)
	}
	c.json(http.StatusOK, map[string]any{"id": id, "object": "conversation.deleted", "deleted": true})
	return nil
}

func conversationObject(sum convstore.Summary, msgs []abi.Message) map[string]any {
	o := map[string]any{"id": sum.ID, "object": "conversation", "created": sum.Created.Unix(), "updated": sum.Updated.Unix(),
		"messages_count": sum.Messages, "bytes": sum.Bytes}
	if msgs != nil {
		o["messages"] = msgs
	}
	return o
}

// withConversation puts the kept messages of conversation id before the
// request's own history; the query and answer are appended by
// keepTurn once the request is answered.
func (c *call) withConversation(id string, history []abi.Message) ([]abi.Message, *apiError) {
	if id == "" {
		return history, nil
	}
	if c.s.convs == nil {
		e := c.s.conversationsOff()
		e.Param = "conversation_id"
		return nil, e
	}
	conv, err := c.s.convs.Get(c.r.Context(), c.convTenant(), id)
	if err != nil {
		return nil, convError(c, id, err)
	}
	if max := c.s.cfg.Conversations.MaxMessages; conv.Messages+2 > max {
		return nil, convError(c, id, fmt.Errorf("%w: the conversation has %d messages, the limit is %d", convstore.ErrFull, conv.Messages, max))
	}
	c.convID = id
	kept := make([]abi.Message, 0, len(conv.History)+len(history))
	for _, m := range conv.History {
		if m.Role == abi.RoleUser || m.Role == abi.RoleAssistant {
			kept = append(kept, m)
		}
	}
	return append(kept, history...), nil
}

// keepTurn appends the request's query and its answer to its
// conversation. A failure is the client's to know (the answer was given,
// the turn was not kept): it is logged and said in a header.
func (c *call) keepTurn(query, answer string) {
	if c.convID == "" {
		return
	}
	// Kept even when the client has gone: the answer was made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 10*time.Second)
	defer cancel()
	_, err := c.s.convs.Append(ctx, c.convTenant(), c.convID,
		abi.Message{Role: abi.RoleUser, Content: query}, abi.Message{Role: abi.RoleAssistant, Content: answer})
	if err != nil {
		c.s.log.Warn("keeping a conversation's turn failed", "request_id", c.id, "tenant", c.label,
			"conversation_id", c.convID, "err", err)
		if !c.w.wrote {
			c.w.Header().Set("X-MDSA-Conversation-Error", clip(err.Error(), 200))
		}
	}
}

// sweepConversations deletes expired conversations every
// conversationSweep until ctx is done.
func (s *Server) sweepConversations(ctx context.Context) {
	t := time.NewTicker(conversationSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.convs.Sweep(ctx); err != nil {
				s.log.Warn("deleting expired conversations failed", "err", err)
			} else if n > 0 {
				s.log.Info("expired conversations deleted", "count", n)
			}
		}
	}
}
