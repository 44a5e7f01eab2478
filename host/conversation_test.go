package host

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// A conversation far longer than the model's context is answered, its
// oldest turns left out, with real llama.cpp.
func TestLongConversationFitsTheContext(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = testutil.LlamaLibDir(t)
	cfg.Engine.ContextSize = 1024 // the support plugin's prompt alone is about 400 tokens
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithModelFile(fixture.modelPath))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var history []abi.Message
	for i := range 20 {
		history = append(history,
			abi.Message{Role: abi.RoleUser, Content: fmt.Sprintf("Turn %d: my order %d arrived damaged and the box was open. %s", i, 1000+i, strings.Repeat("It was a gift. ", 12))},
			abi.Message{Role: abi.RoleAssistant, Content: "Sorry to hear that. " + strings.Repeat("We will look into it. ", 12)})
	}
	gen := abi.Generation{MaxTokens: 32}
	res, err := h.Process(context.Background(), Request{Query: "Can I get a refund for my order?", History: history, Generation: gen})
	if err != nil {
		t.Fatalf("a long conversation failed: %v", err)
	}
	if res.HistoryDropped <= 0 || res.HistoryDropped >= len(history) || !strings.HasPrefix(res.Response, gguf.SynthReply) {
		t.Fatalf("dropped %d of %d messages; answer %q", res.HistoryDropped, len(history), res.Response)
	}
	if res.Tokens.Prompt+gen.MaxTokens > cfg.Engine.ContextSize {
		t.Fatalf("prompt of %d tokens leaves no room for %d in a context of %d", res.Tokens.Prompt, gen.MaxTokens, cfg.Engine.ContextSize)
	}
	t.Logf("kept %d of %d messages: a prompt of %d tokens in a context of %d", len(history)-res.HistoryDropped, len(history), res.Tokens.Prompt, cfg.Engine.ContextSize)
	// A conversation that fits keeps all of it.
	res, err = h.Process(context.Background(), Request{Query: "Can I get a refund for my order?", History: history[len(history)-2:], Generation: gen})
	if err != nil || res.HistoryDropped != 0 {
		t.Fatalf("short conversation: dropped %d, %v", res.HistoryDropped, err)
	}
}

// A follow-up routes with its conversation; router.conversation_switch = 0
// routes it alone.
func TestConversationAwareRouting(t *testing.T) {
	eng := &fakeEngine{text: "ok"}
	h := newHost(t, WithEngine(eng))
	history := []abi.Message{
		{Role: abi.RoleUser, Content: "I have had a fever and a sore throat for three days"},
		{Role: abi.RoleAssistant, Content: "That sounds like a viral infection."},
	}
	res, err := h.Process(context.Background(), Request{Query: "is it ok to take something for that with coffee?", History: history})
	if err != nil {
		t.Fatal(err)
	}
	if res.Domain != "medical" || res.Conversation == nil || res.Conversation.Prior != "medical" {
		t.Fatalf("follow-up: %s %+v", res.Domain, res.Conversation)
	}
	res, err = h.Process(context.Background(), Request{Query: "How do I fix a segmentation fault in my C program?", History: history})
	if err != nil || res.Domain != "technical" || res.Conversation.Reason != router.ConvSwitched {
		t.Fatalf("switch: %s %+v %v", res.Domain, res.Conversation, err)
	}
	if res, err := h.Process(context.Background(), Request{Query: "is it ok with coffee?"}); err != nil || res.Conversation != nil {
		t.Fatalf("no history: %+v %v", res.Conversation, err)
	}

	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Router.ConversationSwitch = 0
	h2, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(eng))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if res, err := h2.Process(context.Background(), Request{Query: "is it ok to take something for that with coffee?", History: history}); err != nil || res.Conversation != nil {
		t.Fatalf("conversation_switch = 0: %+v %v", res.Conversation, err)
	}
}
