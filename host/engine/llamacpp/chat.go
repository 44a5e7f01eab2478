package llamacpp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// This file turns Request.Messages into prompt tokens such that special
// (control) tokens come only from the chat template, never from what the
// messages say. See "Prompts" in the package documentation.

// maxRoleLen bounds the length of a message role.
const maxRoleLen = 64

// maxPromptBytes bounds the text of one prompt (llama.cpp takes its length
// as an int32).
const maxPromptBytes = 1 << 30

// Content placeholders. The template is rendered with
// placeholder(i) = markerPad + markerPrefix + i + markerEnd + markerPad in
// place of the content of message i; the pads are whitespace that a template
// which trims the content removes, which tells on each side whether the
// content is to be trimmed. The rendered text consists of the template's own
// text, the roles (validated, so they cannot contain these bytes) and the
// placeholders: message content never reaches the renderer.
const (
	markerPrefix = "\x1emdsa-content-"
	markerEnd    = '\x1f'
	markerPad    = "\v\f"
)

// asciiSpace is what llama.cpp's templates trim (C isspace).
const asciiSpace = " \t\n\v\f\r"

// chatPart is one piece of a rendered chat prompt: text written by the
// template (trusted: special-token text in it becomes special tokens) or
// message content (never parsed for special tokens).
type chatPart struct {
	text    string
	content bool
}

// partsBuilder collects chat parts, merging adjacent template text (in
// linear time, however many empty contents there are).
type partsBuilder struct {
	parts   []chatPart
	pending strings.Builder // template text not yet in parts
}

func (b *partsBuilder) template(s string) { b.pending.WriteString(s) }

func (b *partsBuilder) content(s string) {
	if s == "" {
		return
	}
	b.flush()
	b.parts = append(b.parts, chatPart{text: s, content: true})
}

func (b *partsBuilder) flush() {
	if b.pending.Len() > 0 {
		b.parts = append(b.parts, chatPart{text: b.pending.String()})
		b.pending.Reset()
	}
}

// done returns the parts.
func (b *partsBuilder) done() []chatPart {
	b.flush()
	return b.parts
}

// joinParts returns the prompt text the parts make up: what the template
// renders with the real contents.
func joinParts(parts []chatPart) string {
	n := 0
	for _, p := range parts {
		n += len(p.text)
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range parts {
		b.WriteString(p.text)
	}
	return b.String()
}

// checkMessages validates msgs: a role is 1 to maxRoleLen ASCII letters,
// digits, '_' or '-' (roles are written into the template text, so they must
// not be able to spell special tokens), and no role or content holds a NUL
// byte.
func checkMessages(msgs []engine.Message) error {
	for i, m := range msgs {
		if err := checkRole(m.Role); err != nil {
			return fmt.Errorf("llamacpp: message %d: %w", i, err)
		}
		if err := cString(fmt.Sprintf("message %d content", i), m.Content); err != nil {
			return err
		}
	}
	return nil
}

// checkRole reports whether role is acceptable; see checkMessages.
func checkRole(role string) error {
	if role == "" {
		return errors.New("empty role")
	}
	if len(role) > maxRoleLen {
		return fmt.Errorf("role is %d bytes long, at most %d allowed", len(role), maxRoleLen)
	}
	for i := 0; i < len(role); i++ {
		c := role[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("role %q has byte %q at offset %d; roles are ASCII letters, digits, '_' and '-'", role, c, i)
		}
	}
	return nil
}

// chatParts renders msgs with the template tmpl (ChatML when tmpl is empty
// or llama.cpp does not recognise it) and splits the result into template
// text and message contents. msgs must have passed checkMessages.
func (e *Engine) chatParts(tmpl string, msgs []engine.Message) []chatPart {
	if tmpl != "" {
		if parts, ok := templateParts(tmpl, msgs); ok {
			return parts
		}
		e.log.Debug("llama.cpp does not recognise the model's chat template; using ChatML", "model", e.info.Name)
	}
	return chatMLParts(msgs)
}

// placeholder stands for the content of message i while the template is
// rendered.
func placeholder(i int) string {
	return markerPad + markerPrefix + strconv.Itoa(i) + string(rune(markerEnd)) + markerPad
}

// templateParts renders msgs with llama.cpp's implementation of tmpl, with
// placeholders for the contents, and splits the output at the placeholders.
// Where the template trimmed a placeholder's padding it trims the content
// too (ASCII whitespace, as llama.cpp does). Templates may also leave out
// what is empty (after trimming), so an empty content is rendered as such,
// and so is a blank one (only whitespace) that the template trims, which
// takes a second rendering. It reports false when llama.cpp does not
// recognise tmpl or the output cannot be split.
func templateParts(tmpl string, msgs []engine.Message) ([]chatPart, bool) {
	ph := make([]engine.Message, len(msgs))
	for i, m := range msgs {
		ph[i] = engine.Message{Role: m.Role}
		if m.Content != "" {
			ph[i].Content = placeholder(i)
		}
	}
	for range 2 {
		parts, trimmedBlank, ok := splitRendered(tmpl, ph, msgs)
		if !ok || len(trimmedBlank) == 0 {
			return parts, ok
		}
		for _, i := range trimmedBlank {
			ph[i].Content = ""
		}
	}
	parts, _, ok := splitRendered(tmpl, ph, msgs)
	return parts, ok
}

// splitRendered renders ph (msgs with placeholders) with tmpl and splits the
// output into template text and the contents of msgs. It also returns the
// messages whose content is blank but was trimmed, which are to be rendered
// empty (possibly more than once).
func splitRendered(tmpl string, ph, msgs []engine.Message) (parts []chatPart, trimmedBlank []int, ok bool) {
	s, ok := applyTemplate(tmpl, ph)
	if !ok {
		return nil, nil, false
	}
	var b partsBuilder
	for {
		j := strings.Index(s, markerPrefix)
		if j < 0 {
			b.template(s)
			return b.done(), trimmedBlank, true
		}
		k := j + len(markerPrefix)
		end := k
		for end < len(s) && '0' <= s[end] && s[end] <= '9' {
			end++
		}
		if end == k || end-k > 9 || end >= len(s) || s[end] != markerEnd {
			return nil, nil, false
		}
		idx, err := strconv.Atoi(s[k:end])
		if err != nil || idx >= len(msgs) {
			return nil, nil, false
		}
		end++ // markerEnd
		c := msgs[idx].Content
		trimmed := false
		if strings.HasSuffix(s[:j], markerPad) {
			j -= len(markerPad)
		} else {
			c = strings.TrimLeft(c, asciiSpace)
			trimmed = true
		}
		if strings.HasPrefix(s[end:], markerPad) {
			end += len(markerPad)
		} else {
			c = strings.TrimRight(c, asciiSpace)
			trimmed = true
		}
		if trimmed && c == "" {
			trimmedBlank = append(trimmedBlank, idx)
		}
		b.template(s[:j])
		b.content(c)
		s = s[end:]
	}
}

// chatMLParts formats msgs as ChatML, ending with the opening of the
// assistant turn: the fallback for models without a usable chat template.
func chatMLParts(msgs []engine.Message) []chatPart {
	var b partsBuilder
	for _, m := range msgs {
		b.template("<|im_start|>" + m.Role + "\n")
		b.content(m.Content)
		b.template("<|im_end|>\n")
	}
	b.template("<|im_start|>assistant\n")
	return b.done()
}

// chatML formats msgs in ChatML, ending with the opening of the assistant
// turn.
func chatML(msgs []engine.Message) string { return joinParts(chatMLParts(msgs)) }

// applyTemplate formats msgs with llama.cpp's built-in implementation of the
// template (llama.cpp recognises common templates by their text, or by the
// names llama_chat_builtin_templates lists; it does not run arbitrary
// Jinja), with the assistant prefix. It reports false when the template is
// unknown. (A known template may render nothing: deepseek-ocr drops empty
// messages.) Strings holding NUL bytes must not be passed.
func applyTemplate(tmpl string, msgs []engine.Message) (string, bool) {
	if len(msgs) == 0 {
		return "", false
	}
	cm := make([]llama.ChatMessage, len(msgs))
	size := len(tmpl)
	for i, m := range msgs {
		cm[i] = llama.NewChatMessage(m.Role, m.Content)
		size += len(m.Role) + len(m.Content) + 32
	}
	buf := make([]byte, 2*size)
	n := llama.ChatApplyTemplate(tmpl, cm, true, buf)
	if n > int32(len(buf)) {
		buf = make([]byte, n)
		n = llama.ChatApplyTemplate(tmpl, cm, true, buf)
	}
	if n < 0 || n > int32(len(buf)) {
		return "", false
	}
	return string(buf[:n]), true
}

// vocabSpecials classifies the tokens of a vocabulary, as bit sets indexed
// by token id, so that prompt preparation does not cross into llama.cpp for
// every token.
type vocabSpecials struct {
	// parsed marks the tokens that llama.cpp matches in text only when
	// special-token parsing is on (attribute CONTROL or UNKNOWN).
	parsed []uint64
	// control marks the control tokens, and the user-defined tokens that
	// end generation, which message content must never produce.
	control []uint64
	// eog lists the end-of-generation tokens, which Params.IgnoreEOS bans.
	eog []llama.Token
}

// newVocabSpecials reads the attributes of every token of vocab: one
// llama.cpp call per token, about 0.35 µs each (50 ms for 150,000 tokens).
func newVocabSpecials(vocab llama.Vocab) vocabSpecials {
	n := int(llama.VocabNTokens(vocab))
	vs := vocabSpecials{parsed: make([]uint64, (n+63)/64), control: make([]uint64, (n+63)/64)}
	eos, eot := llama.VocabEOS(vocab), llama.VocabEOT(vocab)
	for id := range n {
		attr := llama.VocabGetAttr(vocab, llama.Token(id))
		if attr&(llama.TokenAttrControl|llama.TokenAttrUnknown) != 0 {
			vs.parsed[id/64] |= 1 << (id % 64)
		}
		if attr&llama.TokenAttrControl != 0 || (attr&llama.TokenAttrUserDef != 0 && llama.VocabIsEOG(vocab, llama.Token(id))) {
			vs.control[id/64] |= 1 << (id % 64)
		}
		if attr&(llama.TokenAttrControl|llama.TokenAttrUserDef) != 0 || id == int(eos) || id == int(eot) {
			if llama.VocabIsEOG(vocab, llama.Token(id)) {
				vs.eog = append(vs.eog, llama.Token(id))
			}
		}
	}
	return vs
}

func bit(set []uint64, t llama.Token) bool {
	i := int(t)
	return i >= 0 && i/64 < len(set) && set[i/64]&(1<<(i%64)) != 0
}

// chatTokens renders msgs with tmpl (see chatParts) and tokenizes the
// result so that special tokens come from the template text only. With
// benign content (no special-token text) the tokens equal those of the
// rendered text tokenized with special-token parsing, as llama.cpp's server
// does it.
func (e *Engine) chatTokens(tmpl string, msgs []engine.Message) ([]llama.Token, error) {
	if err := checkMessages(msgs); err != nil {
		return nil, err
	}
	if e.specialsReady == nil {
		return nil, errNoDecoder
	}
	<-e.specialsReady
	return e.tokenizeParts(e.chatParts(tmpl, msgs))
}

// tokenizeParts tokenizes a rendered chat prompt. Template text is searched
// for special tokens by llama.cpp itself (special-token parsing on); every
// stretch of text between two such tokens, template text and message content
// alike, is then tokenized in one piece with special-token parsing off. So
// the text runs are split exactly where a tokenization of the whole prompt
// would split them (leading-space and merge behaviour included), but special
// tokens are only recognised in template text. The vocabulary's BOS (and
// EOS, where it asks for one) are added as llama.cpp adds them.
func (e *Engine) tokenizeParts(parts []chatPart) ([]llama.Token, error) {
	total := 0
	for _, p := range parts {
		total += len(p.text)
	}
	if total > maxPromptBytes {
		return nil, fmt.Errorf("llamacpp: prompt is too long (%d bytes)", total)
	}

	toks := make([]llama.Token, 0, len(e.addPrefix)+total/2+len(e.addSuffix)+8)
	toks = append(toks, e.addPrefix...)
	var run strings.Builder // text since the last special token
	runContent := false     // run holds message content
	trimStart := false      // the special token before run strips whitespace after it

	flush := func(trimEnd bool) error {
		s := run.String()
		run.Reset()
		if trimStart {
			s = strings.TrimLeft(s, asciiSpace)
		}
		if trimEnd {
			s = strings.TrimRight(s, asciiSpace)
		}
		hadContent := runContent
		runContent, trimStart = false, false
		if s == "" {
			return nil
		}
		t := llama.Tokenize(e.vocab, s, false, false)
		if hadContent {
			for _, id := range t {
				if bit(e.specials.control, id) {
					return fmt.Errorf("llamacpp: message content tokenizes to the control token %d (%q) in this vocabulary; refusing the prompt", id, llama.VocabGetText(e.vocab, id))
				}
			}
		}
		toks = append(toks, t...)
		return nil
	}

	for _, p := range parts {
		if p.content {
			run.WriteString(p.text)
			runContent = true
			continue
		}
		tt := e.templateText(p.text)
		run.WriteString(tt.lead)
		if !tt.special {
			continue
		}
		if err := flush(tt.leadTrim); err != nil {
			return nil, err
		}
		toks = append(toks, tt.mid...)
		run.WriteString(tt.tail)
		trimStart = tt.tailTrim
	}
	if err := flush(false); err != nil {
		return nil, err
	}
	return append(toks, e.addSuffix...), nil
}

// templateText is a piece of template text split at its special tokens:
// lead + mid + tail, where lead and tail are text that joins the runs before
// and after it and mid is tokenized.
type templateText struct {
	special  bool          // the text has special tokens; otherwise it is all lead
	lead     string        // text before the first special token
	leadTrim bool          // the first special token strips whitespace before it
	mid      []llama.Token // the special tokens and the text between them
	tail     string        // text after the last special token
	tailTrim bool          // the last special token strips whitespace after it
}

// Template texts are few (the template's fixed strings and the roles), so
// their splits are cached per engine; these bound the cache.
const (
	maxCachedTemplateText  = 1024 // bytes
	maxCachedTemplateTexts = 512  // entries; the cache starts over when full
)

// templateText splits text (template text, trusted) at the special tokens
// that llama.cpp finds in it with special-token parsing on. The text between
// two special tokens is tokenized with parsing off, honouring the tokens'
// whitespace-stripping attributes.
func (e *Engine) templateText(text string) *templateText {
	e.tmplMu.Lock()
	tt := e.tmplCache[text]
	e.tmplMu.Unlock()
	if tt != nil {
		return tt
	}

	tt = &templateText{}
	off := 0
	rstrip := false // the previous special token strips whitespace after it
	for _, id := range llama.Tokenize(e.vocab, text, false, true) {
		if !bit(e.specials.parsed, id) {
			continue
		}
		st := llama.VocabGetText(e.vocab, id)
		i := strings.Index(text[off:], st)
		if st == "" || i < 0 {
			// Not found from here on: an <unk> that stands for a character
			// of ordinary text, which the text's tokenization produces again.
			continue
		}
		attr := llama.VocabGetAttr(e.vocab, id)
		lstrip := attr&llama.TokenAttrLstrip != 0
		raw := text[off : off+i]
		if !tt.special {
			tt.special, tt.lead, tt.leadTrim = true, raw, lstrip
		} else {
			if rstrip {
				raw = strings.TrimLeft(raw, asciiSpace)
			}
			if lstrip {
				raw = strings.TrimRight(raw, asciiSpace)
			}
			if raw != "" {
				tt.mid = append(tt.mid, llama.Tokenize(e.vocab, raw, false, false)...)
			}
		}
		tt.mid = append(tt.mid, id)
		rstrip = attr&llama.TokenAttrRstrip != 0
		off += i + len(st)
	}
	if !tt.special {
		tt.lead = text
	} else {
		tt.tail, tt.tailTrim = text[off:], rstrip
	}

	if len(text) <= maxCachedTemplateText {
		e.tmplMu.Lock()
		if e.tmplCache == nil || len(e.tmplCache) >= maxCachedTemplateTexts {
			e.tmplCache = make(map[string]*templateText)
		}
		e.tmplCache[strings.Clone(text)] = tt // not a view of the whole rendering
		e.tmplMu.Unlock()
	}
	return tt
}

// promptTokens returns the tokens Generate decodes for req: Messages through
// the chat template (special tokens from the template only), or Prompt as
// is, with special-token parsing (a raw prompt is trusted).
func (e *Engine) promptTokens(req engine.Request) ([]llama.Token, error) {
	if err := e.checkLength(req); err != nil {
		return nil, err
	}
	var tokens []llama.Token
	var err error
	switch {
	case len(req.Messages) > 0 && req.Prompt != "":
		return nil, errors.New("llamacpp: request sets both Messages and Prompt; set one")
	case req.Prompt != "":
		tokens, err = e.tokenize("prompt", req.Prompt, true, true)
	case len(req.Messages) == 0:
		return nil, errors.New("llamacpp: request has neither Messages nor Prompt")
	default:
		tokens, err = e.chatTokens(e.info.ChatTemplate, req.Messages)
	}
	if err != nil {
		return nil, err
	}
	// A template (or raw prompt) that writes the BOS text itself plus
	// add_bos gives two.
	if bos := llama.VocabBOS(e.vocab); len(tokens) > 1 && bos != llama.TokenNull && tokens[0] == bos && tokens[1] == bos {
		tokens = tokens[1:]
	}
	return tokens, nil
}

// A text of n bytes has at least n / (the longest token's bytes) tokens
// under the SentencePiece and byte-level BPE tokenizers, which do not
// normalise text (no token covers more of it than its own piece); the
// bound is taken with a slack of lengthSlack all the same. checkLength
// uses it to refuse a prompt far past the context without tokenizing it:
// a 660 KB message took 0.48 CPU-s to tokenize only to be refused (mdsa
// bench hostile, http-longprompt). Other tokenizers (WordPiece, Unigram)
// normalise, and are left to tokenize.
const lengthSlack = 2

// checkLength returns a ContextLengthError, without tokenizing all of it,
// for a request whose text must exceed the context. A text of more than
// 16 bytes per context token is first held to the bytes bound above (the
// vocabulary is scanned for its longest piece once, the first time a text
// is that long); when that does not settle it, the text is tokenized a
// piece at a time, and refused as soon as its pieces reach twice the
// context (the slack covers tokens merged across a cut), so the refusal
// costs the tokens of twice the context, not those of the whole body.
func (e *Engine) checkLength(req engine.Request) error {
	n := len(req.Prompt)
	for _, m := range req.Messages {
		n += len(m.Content)
	}
	ctx := e.info.ContextSize
	if ctx <= 0 || n <= ctx*8*lengthSlack {
		return nil
	}
	e.pieceOnce.Do(func() {
		if vt := llama.GetVocabType(e.vocab); vt == llama.VocabTypeSPM || vt == llama.VocabTypeBPE {
			e.maxPiece = longestPiece(e.vocab)
		}
	})
	if e.maxPiece > 0 {
		if least := n / (lengthSlack * e.maxPiece); least >= ctx {
			return tooLong(least, ctx)
		}
	}
	limit := lengthSlack * ctx
	counted := 0
	if req.Prompt != "" {
		counted = e.countUpTo(req.Prompt, true, limit)
	}
	for _, m := range req.Messages {
		if counted >= limit {
			break
		}
		counted += e.countUpTo(m.Content, false, limit-counted)
	}
	if counted >= limit {
		return tooLong(counted/lengthSlack, ctx)
	}
	return nil
}

// tooLong is checkLength's error: a prompt of at least tokens tokens.
func tooLong(tokens, ctx int) error {
	return fmt.Errorf("llamacpp: %w (raise Options.ContextSize or shorten the prompt)",
		&engine.ContextLengthError{What: "prompt", Tokens: tokens, Context: ctx, AtLeast: true})
}

// lengthPiece is how many bytes countUpTo tokenizes at a time.
const lengthPiece = 8 << 10

// countUpTo counts text's tokens a piece of about lengthPiece bytes at a
// time, each cut before an ASCII space where the piece has one (else at a
// UTF-8 boundary), and stops once the count reaches limit.
func (e *Engine) countUpTo(text string, parseSpecial bool, limit int) int {
	if strings.IndexByte(text, 0) >= 0 {
		return 0 // refused by tokenize, which names it
	}
	count := 0
	for text != "" && count < limit {
		cut := len(text)
		if cut > lengthPiece {
			cut = lengthPiece
			if sp := strings.LastIndexByte(text[:cut], ' '); sp > 0 {
				cut = sp
			} else {
				for cut > 0 && !utf8.RuneStart(text[cut]) {
					cut--
				}
				if cut == 0 {
					cut = lengthPiece
				}
			}
		}
		count += len(llama.Tokenize(e.vocab, text[:cut], false, parseSpecial))
		text = text[cut:]
	}
	return count
}

// longestPiece is the length in bytes of the vocabulary's longest token
// text, special tokens included.
func longestPiece(vocab llama.Vocab) int {
	buf := make([]byte, 256)
	longest := 0
	for t := range llama.VocabNTokens(vocab) {
		n := llama.TokenToPiece(vocab, llama.Token(t), buf, 0, true)
		if n < 0 { // the buffer is too small: -n is the length
			buf = make([]byte, -n)
			n = llama.TokenToPiece(vocab, llama.Token(t), buf, 0, true)
		}
		longest = max(longest, int(n))
	}
	return longest
}

// specialAffixes returns the tokens llama.cpp puts before and after a text
// tokenized with add_special: those of the empty text, the leading BOS
// before, the rest (EOS, SEP) after.
func specialAffixes(vocab llama.Vocab) (prefix, suffix []llama.Token) {
	t := llama.Tokenize(vocab, "", true, false)
	if bos := llama.VocabBOS(vocab); len(t) > 0 && bos != llama.TokenNull && t[0] == bos {
		return t[:1:1], t[1:]
	}
	return nil, t
}
