package conformance

import (
	"fmt"
	"github.com/mdsa-go/mdsa/internal/stats"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// sample is one prompt request of the prompt and handle checks.
type sample struct {
	name string
	req  abi.PromptRequest
}

// unicodeQuery mixes scripts, emoji, quotes, escapes, control-ish
// whitespace and text that looks like template placeholders or chat
// markup: a plugin must pass it through verbatim.
const unicodeQuery = "Ünïcödé \"double\" and 'single' quotes, a back\\slash, a tab\tand a new line\n" +
	"then 中文, العربية, emoji 🙂👍🏽, {{query}} {{context.company}} \\{{ </s> <|im_end|> [INST] ¿vale?"

// promptSamples builds the prompt samples from the manifest (its examples
// make the plain queries realistic) and the caller's extra queries.
func promptSamples(m abi.Manifest, extra []string, quick bool) []sample {
	plain, second := "How do I get started?", "Can you explain that in more detail?"
	var ex []string
	for _, e := range m.Examples {
		if strings.TrimSpace(e) != "" && utf8.ValidString(e) {
			ex = append(ex, e)
		}
	}
	if len(ex) > 0 {
		plain = ex[0]
	}
	if len(ex) > 1 {
		second = ex[1]
	}
	long := longText("I have a long question. "+plain+" ", 16<<10)
	out := []sample{
		{"plain", abi.PromptRequest{Query: plain}},
		{"history", abi.PromptRequest{
			Query: second,
			History: []abi.Message{
				{Role: abi.RoleUser, Content: "Hi, I have a question."},
				{Role: abi.RoleAssistant, Content: "Sure, how can I help?"},
			},
			Context: map[string]string{"locale": "en-US", "company": "Example Corp"},
		}},
		{"unicode", abi.PromptRequest{Query: unicodeQuery}},
		{"empty-ish", abi.PromptRequest{Query: "?"}},
	}
	if !quick {
		out = append(out, sample{"16KB", abi.PromptRequest{Query: long}})
	}
	for i, q := range extra {
		if strings.TrimSpace(q) == "" {
			continue
		}
		out = append(out, sample{fmt.Sprintf("samples[%d]", i), abi.PromptRequest{Query: q}})
	}
	return out
}

// longText repeats unit (numbering each repetition so the text is not
// one repeated n-gram) to exactly n bytes, cut at a rune boundary.
func longText(unit string, n int) string {
	var b strings.Builder
	for i := 1; b.Len() < n; i++ {
		fmt.Fprintf(&b, "(%d) %s", i, unit)
	}
	s := b.String()
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut])
}

// validateSamples are the answers the validate check judges.
func (c *checker) validateSamples() []struct {
	name string
	req  abi.ValidateRequest
} {
	query := c.samples[0].req.Query
	topic := "this"
	for _, k := range c.manifest.Keywords {
		if strings.TrimSpace(k) != "" {
			topic = k
			break
		}
	}
	normal := fmt.Sprintf("Thanks for asking about %s. Here is what you can do: first, check the details you were given; "+
		"then follow the usual steps for this kind of request. If the problem persists, ask for more help and "+
		"mention what you have already tried.", topic)
	mk := func(resp string) abi.ValidateRequest {
		return abi.ValidateRequest{Query: query, Response: resp, Domain: c.manifest.Name}
	}
	out := []struct {
		name string
		req  abi.ValidateRequest
	}{
		{"normal", mk(normal)},
		{"empty", mk("")},
		{"email", mk("You can write to our team at jane.doe@example.com and we will reply within two working days.")},
	}
	if !c.opts.quick {
		out = append(out, struct {
			name string
			req  abi.ValidateRequest
		}{"64KB", mk(longText("Here is one more detail about "+topic+" that may help you. ", 64<<10))})
	}
	return out
}

// checkDescribe checks the manifest beyond what the host enforces at load.
func (c *checker) checkDescribe() []string {
	m := c.manifest
	var probs []string
	if m.ABI != abi.Version {
		probs = append(probs, fmt.Sprintf("abi is %d, want %d", m.ABI, abi.Version))
	}
	if !abi.ValidName(m.Name) {
		probs = append(probs, fmt.Sprintf("name %q must match [a-z0-9_-]{1,%d}", m.Name, abi.MaxNameLen))
	}
	if strings.TrimSpace(m.Version) == "" {
		probs = append(probs, "version is empty")
	}
	if strings.TrimSpace(m.Description) == "" {
		probs = append(probs, "description is empty")
	}
	probs = append(probs, checkList("keywords", m.Keywords, MinKeywords)...)
	probs = append(probs, checkList("examples", m.Examples, MinExamples)...)
	if len(m.Examples) > 0 {
		kw := make(map[string]bool, len(m.Keywords))
		for _, k := range m.Keywords {
			kw[norm(k)] = true
		}
		all := true
		for _, e := range m.Examples {
			if !kw[norm(e)] {
				all = false
				break
			}
		}
		if all {
			probs = append(probs, "every example is also a keyword: examples must be realistic user utterances, not the keywords again")
		}
	}
	if m.Capabilities == nil {
		probs = append(probs, "capabilities is missing (use [] for none)")
	}
	seen := make(map[string]bool)
	for i, cp := range m.Capabilities {
		switch {
		case !abi.KnownCapability(cp):
			probs = append(probs, fmt.Sprintf("capabilities[%d] %q is unknown", i, cp))
		case seen[cp]:
			probs = append(probs, fmt.Sprintf("capabilities[%d] %q is a duplicate", i, cp))
		}
		seen[cp] = true
	}
	return probs
}

// checkList checks keywords or examples: enough entries, none empty, no
// duplicates (ignoring case and surrounding space).
func checkList(field string, items []string, min int) []string {
	var probs []string
	switch {
	case len(items) == 0:
		probs = append(probs, field+" is empty")
	case len(items) < min:
		probs = append(probs, fmt.Sprintf("%d %s, want at least %d", len(items), field, min))
	}
	first := make(map[string]int, len(items))
	for i, s := range items {
		k := norm(s)
		if k == "" {
			probs = append(probs, fmt.Sprintf("%s[%d] is empty", field, i))
			continue
		}
		if j, dup := first[k]; dup {
			probs = append(probs, fmt.Sprintf("%s[%d] %q duplicates %s[%d]", field, i, clip(s), field, j))
			continue
		}
		first[k] = i
	}
	return probs
}

func norm(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// clip shortens untrusted text for a message.
func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// checkPrompt runs prompt on every sample.
func (c *checker) checkPrompt() []string {
	var (
		probs []string
		rep   repeats
	)
	for i, s := range c.samples {
		resp, d, err := c.prompt(s.req)
		if err != nil {
			p, stop := rep.failed("sample "+s.name, err, len(c.samples)-i-1, c.dead[abi.ExportPrompt] != nil)
			probs = append(probs, p)
			if stop {
				break
			}
			continue
		}
		for _, p := range checkMessages(resp.Messages, s.req.Query) {
			probs = append(probs, fmt.Sprintf("sample %s: %s", s.name, p))
		}
		if p, ok := c.slow("sample "+s.name, d); ok {
			probs = append(probs, p)
		}
	}
	return probs
}

// repeats shortens a run of identical call failures: once a call fails
// exactly like the previous one, the failure is not input-specific and the
// remaining samples are not run (a plugin that traps or floods its output
// on every call would otherwise cost that many more slow calls).
type repeats struct {
	prev, prevWhat string
}

// failed returns the problem to report for a failed sample call and whether
// to stop; left is the number of samples after this one, hung whether the
// export has timed out.
func (r *repeats) failed(what string, err error, left int, hung bool) (string, bool) {
	msg := err.Error()
	if msg == r.prev && left > 0 {
		return fmt.Sprintf("%s: the same failure as %s; %d more sample(s) not run", what, r.prevWhat, left), true
	}
	r.prev, r.prevWhat = msg, what
	return fmt.Sprintf("%s: %s", what, msg), hung
}

// checkMessages checks a prompt's messages for query.
func checkMessages(msgs []abi.Message, query string) []string {
	if len(msgs) == 0 {
		return []string{"no messages"}
	}
	var probs []string
	found := false
	q := strings.TrimSpace(query)
	for i, m := range msgs {
		switch m.Role {
		case abi.RoleSystem, abi.RoleUser, abi.RoleAssistant:
		default:
			probs = append(probs, fmt.Sprintf("messages[%d] has role %q (want system, user or assistant)", i, clip(m.Role)))
		}
		if !utf8.ValidString(m.Content) {
			probs = append(probs, fmt.Sprintf("messages[%d] content is not valid UTF-8", i))
		}
		if strings.Contains(m.Content, q) {
			found = true
		}
	}
	if last := msgs[len(msgs)-1]; last.Role != abi.RoleUser {
		probs = append(probs, fmt.Sprintf("the last message has role %q, want user", clip(last.Role)))
	}
	if !found {
		probs = append(probs, "the query text does not appear verbatim in any message")
	}
	return probs
}

// checkValidate runs validate on every answer sample.
func (c *checker) checkValidate() []string {
	var (
		probs []string
		rep   repeats
	)
	samples := c.validateSamples()
	for i, s := range samples {
		v, d, err := c.validate(s.req)
		if err != nil {
			p, stop := rep.failed("answer "+s.name, err, len(samples)-i-1, c.dead[abi.ExportValidate] != nil)
			probs = append(probs, p)
			if stop {
				break
			}
			continue
		}
		for _, p := range checkVerdict(v) {
			probs = append(probs, fmt.Sprintf("answer %s: %s", s.name, p))
		}
		if p, ok := c.slow("answer "+s.name, d); ok {
			probs = append(probs, p)
		}
	}
	return probs
}

// checkVerdict checks a Validation beyond the host's decoding.
func checkVerdict(v abi.Validation) []string {
	var probs []string
	if math.IsNaN(v.Score) || v.Score < 0 || v.Score > 1 {
		probs = append(probs, fmt.Sprintf("score %v is outside [0, 1]", v.Score))
	}
	if v.Issues == nil {
		probs = append(probs, "issues is missing (use [] when there are none)")
	}
	hasError := false
	for i, is := range v.Issues {
		if strings.TrimSpace(is.Code) == "" || len(is.Code) > abi.MaxIssueCodeLen {
			probs = append(probs, fmt.Sprintf("issues[%d] code %q must be 1-%d bytes", i, clip(is.Code), abi.MaxIssueCodeLen))
		}
		switch is.Severity {
		case abi.SeverityError:
			hasError = true
		case abi.SeverityInfo, abi.SeverityWarning:
		default:
			probs = append(probs, fmt.Sprintf("issues[%d] severity %q is unknown", i, clip(is.Severity)))
		}
		if !utf8.ValidString(is.Message) {
			probs = append(probs, fmt.Sprintf("issues[%d] message is not valid UTF-8", i))
		}
	}
	if v.OK == hasError {
		if v.OK {
			probs = append(probs, "ok is true but an issue has severity error")
		} else {
			probs = append(probs, "ok is false but no issue has severity error")
		}
	}
	if v.Response != nil && !utf8.ValidString(*v.Response) {
		probs = append(probs, "the revised response is not valid UTF-8")
	}
	return probs
}

// checkHandle runs handle, when exported, on every prompt sample.
func (c *checker) checkHandle() []string {
	if !c.p.HasHandle() {
		c.note = "no handle export (nothing to check)"
		return nil
	}
	var (
		probs []string
		times []time.Duration
		rep   repeats
	)
	for i, s := range c.samples {
		h, d, err := c.handle(s.req)
		if err != nil {
			p, stop := rep.failed("sample "+s.name, err, len(c.samples)-i-1, c.dead[abi.ExportHandle] != nil)
			probs = append(probs, p)
			if stop {
				break
			}
			continue
		}
		times = append(times, d)
		if !utf8.ValidString(h.Response) {
			probs = append(probs, fmt.Sprintf("sample %s: response is not valid UTF-8", s.name))
		}
		for _, p := range checkVerdict(h.Validation) {
			probs = append(probs, fmt.Sprintf("sample %s: validation: %s", s.name, p))
		}
		if p, ok := c.slow("sample "+s.name, d); ok {
			probs = append(probs, p)
		}
	}
	if len(times) > 0 {
		c.rep.CallUS[abi.ExportHandle] = us(median(times))
	}
	return probs
}

// checkSandbox checks malformed input, recovery and determinism.
func (c *checker) checkSandbox() []string {
	probs := c.probeMalformed()

	// The plugin keeps serving through the runtime, with the same answer
	// for the same request.
	req := c.samples[1].req
	a, _, err := c.prompt(req)
	if err == nil {
		var b abi.PromptResponse
		b, _, err = c.prompt(req)
		if err == nil && !reflect.DeepEqual(a, b) {
			probs = append(probs, "prompt is not deterministic: two calls with the same request returned different output")
		}
	}
	if err != nil {
		probs = append(probs, fmt.Sprintf("prompt on a valid request failed: %v", err))
	}
	vreq := c.validateSamples()[3].req
	v1, _, err := c.validate(vreq)
	if err == nil {
		var v2 abi.Validation
		v2, _, err = c.validate(vreq)
		if err == nil && !reflect.DeepEqual(v1, v2) {
			probs = append(probs, "validate is not deterministic: two calls with the same request returned different verdicts")
		}
	}
	if err != nil {
		probs = append(probs, fmt.Sprintf("validate on a valid request failed: %v", err))
	}
	return probs
}

// latencyWarmup is the number of unmeasured pairs before the latency check.
const latencyWarmup = 3

// checkLatency measures prompt+validate pairs.
func (c *checker) checkLatency() []string {
	preq := c.samples[0].req
	vreq := c.validateSamples()[0].req
	n := c.opts.LatencyCalls
	pt := make([]time.Duration, 0, n)
	vt := make([]time.Duration, 0, n)
	both := make([]time.Duration, 0, n)
	for i := 0; i < latencyWarmup+n; i++ {
		_, dp, err := c.prompt(preq)
		if err != nil {
			return []string{fmt.Sprintf("call %d: %v", i+1, err)}
		}
		_, dv, err := c.validate(vreq)
		if err != nil {
			return []string{fmt.Sprintf("call %d: %v", i+1, err)}
		}
		if i >= latencyWarmup {
			pt, vt, both = append(pt, dp), append(vt, dv), append(both, dp+dv)
		}
	}
	mp, mv, mb := median(pt), median(vt), median(both)
	c.rep.CallUS[abi.ExportPrompt] = us(mp)
	c.rep.CallUS[abi.ExportValidate] = us(mv)
	c.rep.CallUS["prompt+validate"] = us(mb)
	fig := fmt.Sprintf("p50 prompt+validate %s (prompt %s, validate %s; p90 %s; %d pairs)",
		round(mb), round(mp), round(mv), round(stats.Percentile(both, 0.9)), n)
	if mb > c.opts.MaxCallLatency {
		return []string{fmt.Sprintf("%s is over the %s budget", fig, c.opts.MaxCallLatency)}
	}
	c.note = fig + fmt.Sprintf(", budget %s", c.opts.MaxCallLatency)
	return nil
}

func median(ds []time.Duration) time.Duration { return stats.Percentile(ds, 0.5) }
